"""`DrivestackEnv`: one episode at a time as a plain `gymnasium.Env`.

It is a view of a `DrivestackVectorEnv` with one sub-environment, not a second implementation: the same
step, reward and observation code runs, and a batch of one is unbatched on the way out. It exists for
tools that take a single environment (`gymnasium.make`, `gymnasium.utils.env_checker.check_env`,
`SyncVectorEnv`) and for looking at one episode.

Seeds: `reset(seed=s)` runs scenario seed s, and each unseeded `reset()` after it the next seed (s + 1,
s + 2, ...). Stepping past the end of an episode without `reset()` starts the next episode, as the
vector environment's autoreset does.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from sim.gym.host import ObservationArrays
from sim.gym.vector import DrivestackVectorEnv


class DrivestackEnv(gymnasium.Env):
    """One simulator episode at a time; options as `DrivestackVectorEnv` (`EnvConfig`)."""

    metadata = {"render_modes": []}

    def __init__(self, scenario: str | None = None, render_mode: str | None = None, **options: Any):
        if render_mode is not None:
            raise ValueError(f"DrivestackEnv.render_mode: expected None (no rendering yet), got {render_mode!r}")
        self.vector = DrivestackVectorEnv(num_envs=1, scenario=scenario, **options)
        self.config = self.vector.config
        self.render_mode = None
        self.observation_space = self.vector.single_observation_space
        self.action_space = self.vector.single_action_space

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
        super().reset(seed=seed)
        obs, info = self.vector.reset(seed=seed, options=options)
        return _first(obs), _first_info(info)

    def step(self, action: Any) -> tuple[dict[str, dict[str, np.ndarray]], float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.vector.step(np.asarray(action)[None])
        return _first(obs), float(reward[0]), bool(terminated[0]), bool(truncated[0]), _first_info(info)

    def close(self) -> None:
        self.vector.close()


def _first(obs: ObservationArrays) -> dict[str, dict[str, np.ndarray]]:
    return {part: {name: values[0, ...] for name, values in fields.items()} for part, fields in obs.items()}


def _first_info(info: dict[str, Any]) -> dict[str, Any]:
    """Sub-environment 0's entries, those its mask says it has."""
    return {k: v[0] for k, v in info.items() if not k.startswith("_") and info[f"_{k}"][0]}
