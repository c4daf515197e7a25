"""Gymnasium environments over the batched simulator (docs/gym.md).

    import gymnasium
    import sim.gym  # registers the drivestack/... ids with Gymnasium

    envs = gymnasium.make_vec("drivestack/cut_in-v0", num_envs=64, action="trajectory")
    obs, info = envs.reset(seed=0)
    obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())

`DrivestackVectorEnv` simulates all sub-environments as one batch on a torch device; `DrivestackEnv` is
its one-episode view for tools that take a single `gymnasium.Env`. Options are `EnvConfig`'s fields.
"""

from sim.gym.config import EnvConfig
from sim.gym.registration import env_id, register_envs, registered_ids
from sim.gym.reward import RewardConfig
from sim.gym.single import DrivestackEnv
from sim.gym.vector import DrivestackVectorEnv

register_envs()

__all__ = [
    "DrivestackEnv",
    "DrivestackVectorEnv",
    "EnvConfig",
    "RewardConfig",
    "env_id",
    "register_envs",
    "registered_ids",
]
