"""The Intelligent Driver Model: its settings, its parameters and its acceleration.

Shared by lane following (`sim.dynamics.idm`) and lane changes
(`sim.dynamics.mobil`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from core.config import ConfigError
from sim.dynamics.neighbours import Obstacles, pick
from sim.state import WorldState


@dataclass(frozen=True)
class IdmSettings:
    """Constants of the IDM and MOBIL models shared by every agent.

    Attributes:
        reach_min: m, leaders are looked for at least this far ahead.
        reach_time: s, and at least this many seconds of travel ahead.
        corridor_margin: m, an obstacle is in the corridor when its centre is
            within the two half widths plus this margin of the follower's arc.
        max_decel: m/s^2 (> 0), physical braking limit.
        gap_floor: m, smallest gap used in IDM's interaction term (overlaps
            brake as hard as possible instead of dividing by zero).
        change_threshold: m/s^2, MOBIL's incentive threshold.
        safe_decel: m/s^2 (> 0), MOBIL's safety limit b_safe for the new follower.
        lane_intrusion: m, an obstacle occupies a lane when its box reaches at
            least this far into it.
        change_duration: s, the lateral offset after a lane change decays to 0 over it.
        cooldown: s, no new lane change for this long after one (>= change_duration).
        decision_period: s, MOBIL is evaluated every period, alternating left
            and right targets, so two cars never merge into one gap from both sides at once.
    """

    reach_min: float = 60.0
    reach_time: float = 6.0
    corridor_margin: float = 0.3
    max_decel: float = 9.0
    gap_floor: float = 0.1
    change_threshold: float = 0.2
    safe_decel: float = 4.0
    lane_intrusion: float = 0.3
    change_duration: float = 3.0
    cooldown: float = 5.0
    decision_period: float = 1.0

    def __post_init__(self) -> None:
        positive = ("reach_min", "max_decel", "gap_floor", "safe_decel", "change_duration", "decision_period")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"IdmSettings.{name}: expected > 0, got {getattr(self, name)!r}")
        for name in ("reach_time", "corridor_margin", "change_threshold", "lane_intrusion"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"IdmSettings.{name}: expected >= 0, got {getattr(self, name)!r}")
        if not self.cooldown >= self.change_duration:
            raise ConfigError(
                f"IdmSettings.cooldown: expected >= change_duration={self.change_duration}, got {self.cooldown!r}"
            )


DEFAULT_IDM = IdmSettings()


@dataclass(frozen=True)
class Driver:
    """IDM parameters [B, K] of K drivers (agents, or agents plus the ego)."""

    desired_speed: Tensor
    time_headway: Tensor
    min_gap: Tensor
    max_accel: Tensor
    comfort_decel: Tensor

    def pick(self, index: Tensor) -> Driver:
        return Driver(*(pick(getattr(self, f.name), index) for f in dataclasses.fields(self)))


def agent_drivers(state: WorldState) -> Driver:
    p = state.params
    return Driver(p.desired_speed, p.time_headway, p.min_gap, p.max_accel, p.comfort_decel)


def idm_accel(
    driver: Driver,
    speed: Tensor,
    gap: Tensor,
    closing: Tensor,
    has_leader: Tensor,
    settings: IdmSettings,
    free_floor: float | None = None,
) -> Tensor:
    """a = a_max (1 - (v/v0)^4 - (s*/gap)^2), s* = s0 + max(0, v T + v dv / (2 sqrt(a b))).

    `closing` is v minus the leader's speed along the follower's heading; the
    interaction term is dropped where `has_leader` is false. Clamped to
    [-max_decel, a_max]. `free_floor` bounds the free-road term from below: a
    driver far above its desired speed (a planner's slow proposal) then slows at
    a_max * |free_floor| instead of braking as hard as it can.
    """
    v0 = driver.desired_speed.clamp_min(0.1)
    free = 1.0 - (speed / v0) ** 4
    if free_floor is not None:
        free = free.clamp_min(free_floor)
    root_ab = 2.0 * torch.sqrt((driver.max_accel * driver.comfort_decel).clamp_min(1e-6))
    dynamic = (speed * driver.time_headway + speed * closing / root_ab).clamp_min(0.0)
    desired_gap = driver.min_gap + dynamic
    interaction = (desired_gap / gap.clamp_min(settings.gap_floor)) ** 2
    interaction = interaction * has_leader.to(speed.dtype)
    return (driver.max_accel * (free - interaction)).clamp_min(-settings.max_decel)


def speed_along(obstacles: Obstacles, index: Tensor, heading: Tensor) -> Tensor:
    """Speed [B, N] of obstacle `index` along each follower's `heading`."""
    return pick(obstacles.speed, index) * torch.cos(pick(obstacles.yaw, index) - heading)
