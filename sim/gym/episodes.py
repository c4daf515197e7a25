"""Which scenario each sub-environment runs, and which seed each of its episodes gets.

A suite's scenarios have different capacities (agent slots, paths, replay-log lengths), so they cannot
share one `WorldState`; each scenario runs its own batch on a contiguous block of sub-environments, the
blocks as even as `numpy.array_split` makes them (`hard` with 16 sub-environments: 0-1 `cruising`, 2-3
`lead_brake`, ... in suite order). A single scenario is one block of all of them.

Seeds: after `reset(seed=s)`, episode k (0 for the reset itself, +1 at each autoreset or unseeded
`reset()`) of sub-environment i is scenario seed `s + i + k * num_envs`. Sub-environment i starts with seed
s + i, as in Gymnasium's own vector environments, and no two episodes of one environment share a seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.config import ConfigError, Timing
from sim.scenarios import Scenario, episode_steps


@dataclass(frozen=True)
class ScenarioBlock:
    """Sub-environments `start .. stop - 1`, all running `scenario`, simulated as one batch.

    Attributes:
        scenario: the scenario.
        start, stop: the block's sub-environments.
        steps: sim steps after which an episode is truncated.
    """

    scenario: Scenario
    start: int
    stop: int
    steps: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def assign_blocks(
    scenarios: Sequence[Scenario], num_envs: int, timing: Timing, max_episode_steps: int | None
) -> list[ScenarioBlock]:
    """Split `num_envs` sub-environments into one block per scenario, in order."""
    if num_envs < len(scenarios):
        names = ", ".join(s.name for s in scenarios)
        raise ConfigError(
            f"num_envs: expected at least one sub-environment per scenario of the suite ({len(scenarios)}: {names}), "
            f"got {num_envs}"
        )
    blocks, start = [], 0
    for scenario, envs in zip(scenarios, np.array_split(np.arange(num_envs), len(scenarios)), strict=True):
        steps = episode_steps(scenario, timing)
        if max_episode_steps is not None:
            if max_episode_steps > steps:
                raise ConfigError(
                    f"max_episode_steps: expected at most {steps} for scenario {scenario.name!r} "
                    f"({scenario.duration} s of {timing.sim_dt} s steps), got {max_episode_steps}; lengthen it with "
                    f"overrides={{'duration': ...}}"
                )
            steps = max_episode_steps
        blocks.append(ScenarioBlock(scenario=scenario, start=start, stop=start + len(envs), steps=steps))
        start += len(envs)
    return blocks


def episode_seeds(base: int, envs: np.ndarray, episodes: np.ndarray, num_envs: int) -> np.ndarray:
    """Scenario seeds (int64) of episode `episodes[j]` of sub-environment `envs[j]` (see the module docstring)."""
    return base + envs.astype(np.int64) + episodes.astype(np.int64) * num_envs
