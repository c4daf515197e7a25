"""What one Gymnasium environment over the simulator is: its scenario, action mode, observation parts and
reward weights, as one frozen config checked when it is made (a bad field fails at construction, naming it,
not at the first step)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.config import ConfigError, Timing, require
from sim.config import RasterConfig
from sim.gym.reward import RewardConfig
from sim.gym.spaces import ACTION_MODES
from sim.metrics import MetricsConfig

OBSERVATION_INPUTS = ("detections", "ground_truth")


@dataclass(frozen=True)
class EnvConfig:
    """Options of `DrivestackVectorEnv` and `DrivestackEnv` (keyword arguments of `gymnasium.make` and
    `gymnasium.make_vec`).

    Attributes:
        scenario: a packaged scenario (`cut_in`), a packaged suite (`hard`), or a scenario or suite YAML
            file. A suite's scenarios run side by side, each on its own block of sub-environments.
        action: "control" (acceleration and steering) or "trajectory" (a plan for the tracking controller).
        inputs: observation parts beside the sensor frame: "detections" (the noisy object sensor, what the
            `idm` and `pdm` baselines read) and/or "ground_truth" (every agent, exactly).
        device: torch device the batch is simulated on ("cpu", "cuda", ...).
        max_episode_steps: truncate episodes after this many sim steps, at most the scenario's own length
            (which follows from its `duration`; override `duration` to lengthen it). None: the scenario's.
        overrides: dotted scenario keys replaced before building (`Scenario.with_overrides`), e.g.
            `{"duration": 3.0, "traffic.vehicles": 8}`.
        reward: the reward's weights.
        metrics: the thresholds of the metrics the reward reads (nuPlan's by default).
        raster: the sensor rasters' size and resolution (128 x 128 cells of 0.5 m by default).
        timing: sim step and plan sampling (`Timing`).
        validate: validate every observation's contracts and the state after every step (slow; debugging).
    """

    scenario: str | Path | None = None
    action: str = "control"
    inputs: tuple[str, ...] = ("detections",)
    device: str | torch.device = "cpu"
    max_episode_steps: int | None = None
    overrides: Mapping[str, Any] | None = None
    reward: RewardConfig = field(default_factory=RewardConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    raster: RasterConfig = field(default_factory=RasterConfig)
    timing: Timing = field(default_factory=Timing)
    validate: bool = False

    def __post_init__(self) -> None:
        o = "EnvConfig"
        require(
            isinstance(self.scenario, (str, Path)) and str(self.scenario) != "",
            o,
            "scenario",
            "a packaged scenario or suite name, or a path to a scenario or suite .yaml file",
            self.scenario,
        )
        require(self.action in ACTION_MODES, o, "action", f"one of {ACTION_MODES}", self.action)
        inputs = (self.inputs,) if isinstance(self.inputs, str) else tuple(self.inputs)
        unknown = [name for name in inputs if name not in OBSERVATION_INPUTS]
        require(not unknown, o, "inputs", f"a subset of {OBSERVATION_INPUTS}", self.inputs)
        object.__setattr__(self, "inputs", tuple(dict.fromkeys(inputs)))
        require(
            self.max_episode_steps is None or (isinstance(self.max_episode_steps, int) and self.max_episode_steps >= 1),
            o,
            "max_episode_steps",
            "None or an int >= 1",
            self.max_episode_steps,
        )
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as e:
            expected = "a torch device such as 'cpu' or 'cuda'"
            raise ConfigError(f"{o}.device: expected {expected}, got {self.device!r}") from e
        for name, cls in (("reward", RewardConfig), ("metrics", MetricsConfig), ("raster", RasterConfig)):
            value = getattr(self, name)
            require(isinstance(value, cls), o, name, f"a {cls.__name__}", value)
        require(isinstance(self.timing, Timing), o, "timing", "a Timing", self.timing)


def env_config(owner: str, **options: Any) -> EnvConfig:
    """An EnvConfig from keyword options, an unknown option named with the ones there are."""
    known = {f.name for f in dataclasses.fields(EnvConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"{owner}: unknown options {unknown}; expected some of {sorted(known)}")
    return EnvConfig(**options)
