"""`PlannerConfig`: the proposals, the risk and the cost weights of the stack's planner."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from core.config import ConfigError, config_from_dict, require
from sim.proposals import ProposalConfig

OWNER = "PlannerConfig"
STEP_DEPENDENCE = ("correlated", "independent")
POSITIVE_FIELDS = (
    "softmin_temperature",
    "lane_half_width",
    "comfort_accel",
    "comfort_jerk",
    "consistency_scale",
    "sample_position_std",
    "min_progress",
)


@dataclass(frozen=True)
class CostWeights:
    """Weights of the cost terms (`planning.costs`, `planning.interaction`), each term normalised first.

    The unit of cost is one certain collision (collision weight 1), so sigma reads in 1/collisions:
    at sigma = 1 a 1 % chance of a collision costs about 1.7 % of one, at sigma = 5 about 18 %.
    The other weights are fractions of a collision.

    Attributes:
        collision: per unit of expected, discounted collision probability with an agent.
        headway: per unit of probability that an agent is inside the ego's box stretched ahead by
            `PlannerConfig.time_to_collision` seconds of its speed (nuPlan's TTC bound).
        yielding: per unit of probability that an agent reaches a place the ego occupied within
            `PlannerConfig.yield_time` seconds after it (gap acceptance where paths cross).
        progress: per fraction of the best proposal's progress not made (a reward for progress).
        lane: per mean squared lateral offset from the route, in lane half-widths.
        drivable: per unit of the ego's worst corner off the drivable area at its worst step, discounted.
        comfort: per mean squared acceleration and jerk in units of their comfort scales.
        comfort_bounds: per unit of the largest excess over nuPlan's comfort bounds, relative to the bound.
        speed_limit: per mean squared excess over the speed limit, in units of the limit.
        consistency: per mean squared distance from the previous plan, in units of `consistency_scale`.
    """

    collision: float = 1.0
    headway: float = 0.2
    yielding: float = 0.3
    progress: float = 0.4
    lane: float = 0.025
    drivable: float = 0.5
    comfort: float = 0.01
    comfort_bounds: float = 0.1
    speed_limit: float = 0.25
    consistency: float = 0.02

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            ok = isinstance(value, int | float) and math.isfinite(value) and value >= 0
            require(ok, "CostWeights", name, "a finite number >= 0", value)


@dataclass(frozen=True)
class PlannerConfig:
    """Proposals, risk and costs of the planner.

    Attributes:
        proposals: the proposal generator shared with the rule-based baseline (`sim.proposals`).
        leader_agents: the agents that come closest to the ego's route ahead, at most this many, are
            the candidates for the proposals' IDM leaders (their cost grows linearly with it).
        max_agents: of those, the interaction terms consider the ones that come closest to the
            proposals, at most this many (their cost grows linearly with it).
        softmin_temperature: proposal weights are softmax(-risk / temperature) in training.
        collision_discount: per-step factor on later contacts (replanning can still avoid them).
        step_dependence: how a mode's per-step contact probabilities combine over the horizon:
            "independent", the probability of a first contact at each step (noisy-OR), or
            "correlated", the largest (errors persist from step to step).
        margin: added to the half-sizes of every ego + agent footprint, m.
        standstill_severity: what a contact costs while the ego stands still, as a fraction of one at
            `severity_speed` or faster (linear between): being run into while stopped is not the ego's
            fault and does less harm, so a stop is the better choice when no proposal avoids an agent.
        severity_speed: m/s, the ego's speed from which a contact costs in full.
        time_to_collision: s, the headway term stretches the ego's box ahead by this much of its speed.
        yield_time: s, the yielding term counts agents that reach the ego's place up to this long after.
        lane_half_width: m, the unit of the lane-keeping term.
        comfort_accel: m/s^2, the unit of the comfort term's accelerations.
        comfort_jerk: m/s^3, the unit of its jerk.
        consistency_scale: m, the unit of the distance from the previous plan.
        min_progress: m, progress is a fraction of the best proposal's, or of this when that is shorter.
        sample_position_std: std of the Gaussian blur of sampled futures, m (a sample is a point).
        weights: cost weights.
    """

    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    leader_agents: int = 32
    max_agents: int = 8
    softmin_temperature: float = 0.025
    collision_discount: float = 0.95
    step_dependence: str = "independent"
    margin: float = 0.3
    standstill_severity: float = 1.0
    severity_speed: float = 2.0
    time_to_collision: float = 0.95
    yield_time: float = 1.2
    lane_half_width: float = 1.75
    comfort_accel: float = 3.0
    comfort_jerk: float = 4.0
    consistency_scale: float = 2.0
    min_progress: float = 5.0
    sample_position_std: float = 0.3
    weights: CostWeights = field(default_factory=CostWeights)

    def __post_init__(self) -> None:
        o = OWNER
        if not isinstance(self.proposals, ProposalConfig):
            raise ConfigError(f"{o}.proposals: expected a ProposalConfig, got {self.proposals!r}")
        for name in POSITIVE_FIELDS:
            value = getattr(self, name)
            require(isinstance(value, int | float) and value > 0, o, name, "> 0", value)
        for name in ("leader_agents", "max_agents"):
            agents = getattr(self, name)
            require(isinstance(agents, int) and agents >= 1, o, name, "an int >= 1", agents)
        require(self.step_dependence in STEP_DEPENDENCE, o, "step_dependence", f"one of {STEP_DEPENDENCE}",
                self.step_dependence)  # fmt: skip
        require(0 < self.collision_discount <= 1, o, "collision_discount", "in (0, 1]", self.collision_discount)
        require(0 <= self.standstill_severity <= 1, o, "standstill_severity", "in [0, 1]", self.standstill_severity)
        for name in ("margin", "time_to_collision", "yield_time", "severity_speed"):
            require(getattr(self, name) >= 0, o, name, ">= 0", getattr(self, name))
        if not isinstance(self.weights, CostWeights):
            raise ConfigError(f"{o}.weights: expected a CostWeights, got {self.weights!r}")

    @property
    def num_candidates(self) -> int:
        return self.proposals.num_proposals

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlannerConfig:
        return config_from_dict(cls, data, OWNER)


__all__ = ["CostWeights", "PlannerConfig"]
