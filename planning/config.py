"""`PlannerConfig`: the candidate lattice, its refinement and the cost weights."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from sim.config import ConfigError, config_from_dict, require

OWNER = "PlannerConfig"
STEP_DEPENDENCE = ("correlated", "independent")
POSITIVE_FIELDS = (
    "offset_ramp",
    "accel_time",
    "max_accel",
    "max_decel",
    "stop_decel",
    "softmin_temperature",
    "lane_half_width",
    "comfort_accel",
    "comfort_jerk",
    "sample_position_std",
)


@dataclass(frozen=True)
class CostWeights:
    """Weights of the cost terms (`planning.costs`), each term normalised before weighting.

    The unit of cost is one certain collision at moderate speed (collision weight 1),
    so sigma reads in 1/collisions: at sigma = 1 a 1 % chance of a collision
    costs about 1.7 % of one, at sigma = 5 about 18 %. The other weights are
    fractions of a collision.

    Attributes:
        collision: per unit of expected, discounted, speed-weighted collision.
        progress: per fraction of the distance the speed limit allows over the horizon (a reward).
        lane: per mean squared lateral offset from the route, in lane half-widths.
        drivable: per fraction of the ego's corner samples off the drivable area.
        comfort: per mean squared acceleration and jerk in units of their comfort bounds.
        speed_limit: per mean squared excess over the speed limit, in units of the limit.
    """

    collision: float = 1.0
    progress: float = 0.25
    lane: float = 0.025
    drivable: float = 0.5
    comfort: float = 0.01
    speed_limit: float = 0.25

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            ok = isinstance(value, int | float) and math.isfinite(value) and value >= 0
            require(ok, "CostWeights", name, "a finite number >= 0", value)


@dataclass(frozen=True)
class PlannerConfig:
    """Candidates, refinement, risk and costs of the planner.

    Attributes:
        speed_fractions: target speeds of the lattice as fractions of the speed limit (0 = stop).
        lateral_offsets: lateral offsets from the route of the lattice, m (left > 0); a lane
            change is an offset of one lane width.
        offset_ramp: arc length over which an offset is blended in, m.
        accel_time: time constant of the speed profiles' approach to their target, s.
        max_accel: the profiles' acceleration bound, m/s^2.
        max_decel: the profiles' braking bound, m/s^2 (> 0).
        stop_decel: the braking bound of the profiles that stop (target speed 0), m/s^2; it blends
            into `max_decel` for targets up to 2 m/s. An emergency stop must be a candidate.
        substeps: integration substeps per plan step.
        max_agents: the collision term considers the agents that come closest to the
            candidates, at most this many (its cost grows linearly with it).
        refine_steps: unrolled gradient steps on each candidate's (target speed, offset);
            a fixed number, so the planner exports.
        refine_lr: step sizes on (target speed m/s, offset m) per unit of risk gradient.
        refine_max_step: the largest change of (target speed, offset) per step.
        finite_difference: half-widths of the central differences that give the gradient.
        softmin_temperature: candidate weights are softmax(-risk / temperature) in training.
        collision_discount: per-step factor on later collisions (replanning can still avoid them).
        step_dependence: how a mode's per-step collision probabilities combine over the horizon:
            "correlated" takes the largest (errors persist from step to step), "independent" the
            probability of a first contact at each step as if the steps were independent (noisy-OR).
        severity_gain: s/m, a collision's severity is 1 + severity_gain * ego speed (0: every
            contact costs the same, at standstill too: stopping in a crossing lane is no refuge).
        margin: added to the half-sizes of every ego + agent footprint, m.
        lane_half_width: m, the unit of the lane-keeping term.
        comfort_accel: m/s^2, the unit of the comfort term's acceleration.
        comfort_jerk: m/s^3, the unit of its jerk.
        sample_position_std: std of the Gaussian blur of sampled futures, m (a sample is a point).
        weights: cost weights.
    """

    speed_fractions: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    lateral_offsets: tuple[float, ...] = (0.0, -1.0, 1.0)
    offset_ramp: float = 12.0
    accel_time: float = 1.5
    max_accel: float = 2.0
    max_decel: float = 4.0
    stop_decel: float = 8.0
    substeps: int = 2
    max_agents: int = 8
    refine_steps: int = 1
    refine_lr: tuple[float, float] = (20.0, 10.0)
    refine_max_step: tuple[float, float] = (1.5, 0.5)
    finite_difference: tuple[float, float] = (0.5, 0.25)
    softmin_temperature: float = 0.025
    collision_discount: float = 0.9
    step_dependence: str = "independent"
    severity_gain: float = 0.0
    margin: float = 0.3
    lane_half_width: float = 1.75
    comfort_accel: float = 3.0
    comfort_jerk: float = 4.0
    sample_position_std: float = 0.3
    weights: CostWeights = field(default_factory=CostWeights)

    def __post_init__(self) -> None:
        o = OWNER
        fractions, offsets = self.speed_fractions, self.lateral_offsets
        require(bool(fractions) and min(fractions) >= 0, o, "speed_fractions", "fractions >= 0", fractions)
        require(bool(offsets) and all(math.isfinite(x) for x in offsets), o, "lateral_offsets", "offsets, m", offsets)
        for name in POSITIVE_FIELDS:
            value = getattr(self, name)
            require(isinstance(value, int | float) and value > 0, o, name, "> 0", value)
        require(isinstance(self.substeps, int) and self.substeps >= 1, o, "substeps", "an int >= 1", self.substeps)
        require(
            isinstance(self.max_agents, int) and self.max_agents >= 1, o, "max_agents", "an int >= 1", self.max_agents
        )
        steps = self.refine_steps
        require(isinstance(steps, int) and steps >= 0, o, "refine_steps", "an int >= 0", steps)
        for name in ("refine_lr", "refine_max_step", "finite_difference"):
            value = getattr(self, name)
            require(len(value) == 2 and min(value) >= 0, o, name, "two numbers >= 0", value)
        require(min(self.finite_difference) > 0, o, "finite_difference", "two numbers > 0", self.finite_difference)
        require(self.step_dependence in STEP_DEPENDENCE, o, "step_dependence", f"one of {STEP_DEPENDENCE}",
                self.step_dependence)  # fmt: skip
        require(0 < self.collision_discount <= 1, o, "collision_discount", "in (0, 1]", self.collision_discount)
        require(self.severity_gain >= 0, o, "severity_gain", ">= 0 s/m", self.severity_gain)
        require(self.margin >= 0, o, "margin", ">= 0 m", self.margin)
        if not isinstance(self.weights, CostWeights):
            raise ConfigError(f"{o}.weights: expected a CostWeights, got {self.weights!r}")

    @property
    def num_candidates(self) -> int:
        return len(self.speed_fractions) * len(self.lateral_offsets)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlannerConfig:
        return config_from_dict(cls, data, OWNER)


__all__ = ["CostWeights", "PlannerConfig"]
