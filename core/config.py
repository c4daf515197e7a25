"""Config errors and checks, config dataclasses from JSON, and the timing constants every package shares
(DESIGN.md: all timing constants in one dataclass)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config field holds a value outside what it documents."""


FOLDER_OR_ABSENT = "a folder or a path not there yet (a file of that name is in the way)"


def is_folder_or_absent(path: str | Path) -> bool:
    """Whether an output folder can be made at `path`: checked when a job is configured, not after
    hours of work when its first result is written."""
    return Path(path).is_dir() or not Path(path).exists()


def require(cond: bool, owner: str, name: str, expected: str, value: object) -> None:
    """Raise ConfigError naming `owner.name` unless `cond` holds (for `__post_init__` checks)."""
    if not cond:
        raise ConfigError(f"{owner}.{name}: expected {expected}, got {value!r}")


@dataclass(frozen=True)
class Timing:
    """Time steps shared by the simulator, the stack and the datasets.

    Attributes:
        sim_dt: simulator step, s.
        policy_period_steps: the policy is queried every this many sim steps.
        sample_dt: step of track histories, forecasts and plans, s. 0.4 s matches
            the ETH/UCY benchmark (2.5 Hz) so one predictor serves both.
        history_steps: past steps the predictor sees (8 x 0.4 s = 3.2 s).
        horizon_steps: future steps forecast and planned (12 x 0.4 s = 4.8 s).
    """

    sim_dt: float = 0.1
    policy_period_steps: int = 1
    sample_dt: float = 0.4
    history_steps: int = 8
    horizon_steps: int = 12

    def __post_init__(self) -> None:
        o = "Timing"
        require(self.sim_dt > 0, o, "sim_dt", "> 0 s", self.sim_dt)
        require(self.policy_period_steps >= 1, o, "policy_period_steps", ">= 1", self.policy_period_steps)
        ratio = self.sample_dt / self.sim_dt
        require(
            self.sample_dt > 0 and abs(ratio - round(ratio)) < 1e-6,
            o,
            "sample_dt",
            f"a positive multiple of sim_dt={self.sim_dt}",
            self.sample_dt,
        )
        require(self.history_steps >= 2, o, "history_steps", ">= 2", self.history_steps)
        require(self.horizon_steps >= 1, o, "horizon_steps", ">= 1", self.horizon_steps)

    @property
    def sim_steps_per_sample(self) -> int:
        return round(self.sample_dt / self.sim_dt)

    @property
    def horizon_s(self) -> float:
        return self.horizon_steps * self.sample_dt


def config_from_dict(cls: type, data: Any, where: str) -> Any:
    """Rebuild a (nested) frozen config dataclass from `asdict` output; lists become tuples."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown fields {unknown}")
    defaults, values = cls(), {}  # every config here has defaults; they give the nested types
    for name, value in data.items():
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default):
            values[name] = config_from_dict(type(default), value, f"{where}.{name}")
        else:
            values[name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)
