"""`ProposalConfig`: which proposals are generated, how they follow a leader, and how they are simulated."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from core.config import config_from_dict, require

NO_LEADER_GAP = 1e3  # m; the gap (or leader position) reported when nothing is ahead in the corridor

OWNER = "ProposalConfig"
_POSITIVE = (
    "offset_ramp",
    "lane_change_time",
    "time_headway",
    "min_gap",
    "max_accel",
    "comfort_decel",
    "stop_decel",
    "emergency_decel",
    "wheelbase",
)


@dataclass(frozen=True)
class ProposalConfig:
    """The proposals both planners score (`sim.proposals.generate`), PDM-Closed style.

    Attributes:
        speed_fractions: IDM target speeds as fractions of the speed limit (> 0; the stops are separate).
        lateral_offsets: offsets of the path from the route centreline within the lane, m (left > 0).
        lane_width: m; lane changes are offsets of one lane width to either side, proposed only where
            the map shows a lane centre there (0: no lane changes).
        offset_ramp: arc length over which a lateral offset is blended in, m.
        lane_change_time: s; a lane change is blended in over max(offset_ramp, speed * this) m.
        leader_quantile: the IDM leader is, per agent, the rear position along the route that the
            agent's outcomes (existence x mode weight) reach with this probability; the nearest agent
            wins. 0.5 follows agents more likely there than not; lower is more cautious.
        corridor_margin: m, an agent is in a proposal's corridor when its box comes this close to the ego's.
        yield_gap: s; an agent that crosses the path (or comes against it) is a leader, at the place it
            crosses, from this long before it gets there until this long after it has left (gap acceptance).
        time_headway, min_gap, max_accel, comfort_decel: the proposals' IDM (s, m, m/s^2, m/s^2).
            Slowing to a lower target brakes at most `comfort_decel`; a leader may demand more.
        max_decel: m/s^2, the IDM's hardest braking behind a leader.
        idm_substeps: IDM integration steps per plan sample step.
        stop_decel: m/s^2, the controlled stop's braking.
        emergency_decel: m/s^2, the emergency stop's braking (the tracking controller limits jerk).
        previous_plan: the previous step's plan, re-timed, is a proposal (plan consistency).
        simulation_substeps: controller + bicycle steps per plan sample step when simulating.
        wheelbase: m, the ego's; its box centre lies wheelbase / 2 ahead of the rear axle.

    The proposals are driven by the simulator's default `TrackingController`, the one `sim.runner` uses.
    """

    speed_fractions: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)
    lateral_offsets: tuple[float, ...] = (0.0, -0.5, 0.5)
    lane_width: float = 3.5
    offset_ramp: float = 12.0
    lane_change_time: float = 3.0
    leader_quantile: float = 0.5
    corridor_margin: float = 0.5
    yield_gap: float = 1.2
    time_headway: float = 1.5
    min_gap: float = 2.5
    max_accel: float = 1.5
    comfort_decel: float = 2.5
    max_decel: float = 8.0
    idm_substeps: int = 2
    stop_decel: float = 3.0
    emergency_decel: float = 8.0
    previous_plan: bool = True
    simulation_substeps: int = 2
    wheelbase: float = 2.8

    def __post_init__(self) -> None:
        o = OWNER
        fractions, offsets = self.speed_fractions, self.lateral_offsets
        require(bool(fractions) and min(fractions) > 0, o, "speed_fractions", "fractions > 0", fractions)
        finite = bool(offsets) and all(isinstance(x, int | float) and math.isfinite(x) for x in offsets)
        require(finite, o, "lateral_offsets", "finite offsets, m", offsets)
        for name in _POSITIVE:
            value = getattr(self, name)
            require(isinstance(value, int | float) and value > 0, o, name, "> 0", value)
        require(self.lane_width >= 0, o, "lane_width", ">= 0 m", self.lane_width)
        require(0 < self.leader_quantile <= 1, o, "leader_quantile", "in (0, 1]", self.leader_quantile)
        require(self.corridor_margin >= 0, o, "corridor_margin", ">= 0 m", self.corridor_margin)
        require(self.yield_gap >= 0, o, "yield_gap", ">= 0 s", self.yield_gap)
        require(self.max_decel >= self.comfort_decel, o, "max_decel", ">= comfort_decel", self.max_decel)
        for name in ("idm_substeps", "simulation_substeps"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1, o, name, "an int >= 1", value)

    @property
    def path_offsets(self) -> tuple[float, ...]:
        """Every IDM path's offset: the nudges, then a lane change to the left and to the right."""
        changes = (self.lane_width, -self.lane_width) if self.lane_width > 0 else ()
        return (*self.lateral_offsets, *changes)

    @property
    def num_proposals(self) -> int:
        """IDM paths x target speeds, the controlled and the emergency stop, and the previous plan."""
        return len(self.path_offsets) * len(self.speed_fractions) + 2 + int(self.previous_plan)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProposalConfig:
        return config_from_dict(cls, data, OWNER)
