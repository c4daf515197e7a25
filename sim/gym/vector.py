"""`DrivestackVectorEnv`: `num_envs` episodes of the batched simulator behind Gymnasium's `VectorEnv`.

The sub-environments are rows of one `WorldState` per scenario (`sim.gym.episodes`), advanced together by
the pure `sim.step.step`; nothing loops over sub-environments. One step is the runner's closed loop for
one sim step, with the action in place of a policy:

    1. the action batch is checked (shape, finite, in range) and moved to the device once;
    2. it becomes the ego's command: as is ("control"), or through the tracking controller ("trajectory");
    3. `step` advances the world; the reward metrics judge the step (`sim.gym.reward`);
    4. sub-environments that ended at the previous step start their next episode instead (Gymnasium 1.x
       next-step autoreset: their action is ignored, their reward is 0, they return the new episode's
       first observation);
    5. the sensor observes the new state (`sim.runner.observe`), and the batch goes to numpy once.

Everything stays batched in torch on `device` until step 5 (`sim.gym.host`). docs/gym.md documents the
spaces, the reward and the seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import error, spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from core.config import ConfigError
from sim.controller import TrackingController, centre_plan_to_rear_axle
from sim.gym.config import env_config
from sim.gym.episodes import ScenarioBlock, assign_blocks, episode_seeds
from sim.gym.host import ObservationArrays, observation_arrays, outcome_arrays
from sim.gym.reward import StepReward
from sim.gym.spaces import action_space, check_actions, contract_space
from sim.gym.splice import replace_episodes
from sim.policies import Observation
from sim.runner import observe
from sim.scenarios import build_batch, resolve_suite
from sim.state import WorldState
from sim.step import EgoAction
from sim.step import step as sim_step

SEED_RANGE = 2**31  # an unseeded first reset draws its base seed below this


@dataclass(frozen=True)
class _Reads:
    """What `sim.runner.observe` reads of a policy: the optional observation parts it wants."""

    inputs: frozenset[str]


class DrivestackVectorEnv(VectorEnv):
    """`num_envs` simulator episodes as one Gymnasium vector environment (options: `EnvConfig`).

    Observations are nested dicts of numpy arrays, `obs["frame"]["route"]` [num_envs, R, 2] and so on;
    actions a float32 array [num_envs, 2] ("control") or [num_envs, T, 2] ("trajectory"). Infos hold the
    episode `seed` and the step's reward terms, each with Gymnasium's `_name` mask (False for
    sub-environments being reset).
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, scenario: str | None = None, **options: Any):
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ConfigError(f"DrivestackVectorEnv.num_envs: expected an int >= 1, got {num_envs!r}")
        self.config = config = env_config("DrivestackVectorEnv", scenario=scenario, **options)
        scenarios = resolve_suite(config.scenario)
        if config.overrides:
            scenarios = [s.with_overrides(config.overrides) for s in scenarios]
        self.num_envs = num_envs
        self.device = torch.device(config.device)
        self.blocks: list[ScenarioBlock] = assign_blocks(scenarios, num_envs, config.timing, config.max_episode_steps)
        self.render_mode = None
        self._reads = _Reads(frozenset(config.inputs))
        self._reward = StepReward(config.reward, config.metrics)
        self._controller = TrackingController(timing=config.timing)
        self.single_action_space = action_space(config.action, config.timing)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.single_observation_space, self._slots = self._observation_space()
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._states: list[WorldState] | None = None
        self._base_seed: int | None = None
        self._episode = np.zeros(num_envs, dtype=np.int64)  # episodes each sub-environment has started - 1
        self._done = np.zeros(num_envs, dtype=bool)  # ended at the last step: reset at the next

    # -- spaces ----------------------------------------------------------------
    def _observation_space(self) -> tuple[spaces.Dict, dict[str, int]]:
        """Spaces from the contracts of one probe episode per scenario (seed 0, on the CPU); object
        lists are as wide as the widest scenario's."""
        probes = [self._observe(build_batch(b.scenario, [0], timing=self.config.timing)) for b in self.blocks]
        parts = ("frame", *self.config.inputs)
        slots = {part: max(int(getattr(p, part).valid.shape[1]) for p in probes) for part in self.config.inputs}
        widen = {part: {"M": slots[part]} for part in self.config.inputs}
        return spaces.Dict({p: contract_space(getattr(probes[0], p), widen.get(p)) for p in parts}), slots

    # -- the loop ----------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObservationArrays, dict[str, Any]]:
        """Start a new episode in every sub-environment: with `seed`, sub-environment i gets scenario seed
        seed + i; without, each goes on to its next seed (a random base at the very first reset)."""
        if options:
            raise ConfigError(f"reset: expected no options, got {sorted(options)}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ConfigError(f"reset: seed must be an int >= 0 or None, got {seed!r}")
        super().reset(seed=None if seed is None else int(seed))
        if seed is not None:
            self._base_seed, self._episode[:] = int(seed), 0
        elif self._base_seed is None:
            self._base_seed, self._episode[:] = int(self.np_random.integers(SEED_RANGE)), 0
        else:
            self._episode += 1
        self._states = [self._build(b, np.arange(b.size)) for b in self.blocks]
        self._done[:] = False
        observations = [self._observe(state) for state in self._states]
        return observation_arrays(observations, self._states, self._slots), self._seed_info()

    def step(self, actions: Any) -> tuple[ObservationArrays, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Advance every sub-environment one sim step (`timing.sim_dt`); those that ended at the previous
        step start their next episode instead (see the module docstring)."""
        if self._states is None:
            raise error.ResetNeeded("DrivestackVectorEnv.step: call reset() before the first step")
        resetting = self._done.copy()
        checked = check_actions(actions, self.single_action_space, self.num_envs, self.config.action, resetting)
        commands = torch.from_numpy(checked).to(self.device)
        self._episode += resetting
        outcomes, observations = [], []
        for g, block in enumerate(self.blocks):
            state = self._states[g]
            stepped = sim_step(state, self._command(state, commands[block.start : block.stop]))
            outcomes.append(self._reward(state, stepped, block.steps))
            rows = np.flatnonzero(resetting[block.start : block.stop])
            if rows.size:
                fresh = self._build(block, rows)
                stepped = replace_episodes(stepped, torch.from_numpy(rows).to(self.device), fresh)
            if self.config.validate:
                stepped.validate()
            self._states[g] = stepped
            observations.append(self._observe(stepped))
        obs = observation_arrays(observations, self._states, self._slots)
        reward, terminated, truncated, terms = outcome_arrays(outcomes, judged=~resetting)
        self._done = terminated | truncated
        return obs, reward, terminated, truncated, {**self._seed_info(), **terms}

    def _command(self, state: WorldState, commands: torch.Tensor) -> EgoAction:
        if self.config.action == "control":
            return EgoAction(accel=commands[:, 0], steer=commands[:, 1])
        return self._controller(state.ego, centre_plan_to_rear_axle(commands, state.ego.wheelbase))

    def _build(self, block: ScenarioBlock, rows: np.ndarray) -> WorldState:
        envs = block.start + rows
        seeds = episode_seeds(self._base_seed, envs, self._episode[envs], self.num_envs)
        return build_batch(block.scenario, seeds.tolist(), device=self.device, timing=self.config.timing)

    def _observe(self, state: WorldState) -> Observation:
        obs = observe(state, self._reads, self.config.raster)
        if self.config.validate:
            for part in (obs.frame, obs.detections, obs.ground_truth):
                if part is not None:
                    part.validate()
        return obs

    def _seed_info(self) -> dict[str, np.ndarray]:
        seeds = episode_seeds(self._base_seed, np.arange(self.num_envs), self._episode, self.num_envs)
        return {"seed": seeds, "_seed": np.ones(self.num_envs, dtype=bool)}

    @property
    def states(self) -> list[WorldState]:
        """The current world state of each scenario block (read-only use: for rendering or analysis)."""
        if self._states is None:
            raise error.ResetNeeded("DrivestackVectorEnv.states: call reset() first")
        return list(self._states)

    def close_extras(self, **kwargs: Any) -> None:
        self._states = None
