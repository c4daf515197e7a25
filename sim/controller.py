"""Turns a planned trajectory into the ego's `EgoAction`: pure pursuit for the
steering, proportional control for the speed.

The trajectory is in the ego frame, origin at the rear axle (`EgoState.xy`),
x forward, y left, m; sample k lies at time (k + 1) * `Timing.sample_dt` ahead.
Pure pursuit about the rear axle steers onto the circle through the ego that
reaches the point one lookahead distance further along the trajectory; on a
circular path this is exactly the path's curvature, so arcs are tracked with no
steady-state error.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import torch
from torch import Tensor

from core.config import ConfigError, Timing
from core.contracts import ContractError
from sim.geometry import plan_heading
from sim.state import EgoState
from sim.step import ACCEL_MAX, ACCEL_MIN, STEER_MAX, EgoAction

NEAR_TARGET = 1.0  # m; targets closer than this steer as if they were this far (stopping)
STOP_SPEED = 0.2  # m/s; a plan slower than this means "stop": brake at least HOLD_DECEL
HOLD_DECEL = 1.0  # m/s^2; P control alone would only approach zero speed exponentially


@dataclass(frozen=True)
class TrackingController:
    """Pure pursuit + P speed control.

    Attributes:
        lookahead_time: s; the lookahead distance is max(min_lookahead, v * lookahead_time),
            and the target speed is read this far ahead in time.
        min_lookahead: m.
        speed_gain: 1/s, acceleration per m/s of speed error.
        max_accel: m/s^2, at most `sim.step.ACCEL_MAX`.
        max_decel: m/s^2 (> 0), at most `-sim.step.ACCEL_MIN`.
        max_steer: rad, at most `sim.step.STEER_MAX`.
        max_jerk: m/s^3, how fast the commanded acceleration may change from the
            last applied one (an actuator's rate limit; it also filters plans
            that switch between candidates from one step to the next).
        timing: where `sample_dt` (the trajectory's time step) comes from.
    """

    lookahead_time: float = 0.8
    min_lookahead: float = 4.0
    speed_gain: float = 1.5
    max_accel: float = ACCEL_MAX
    max_decel: float = -ACCEL_MIN
    max_steer: float = STEER_MAX
    max_jerk: float = 12.0
    timing: Timing = field(default_factory=Timing)

    def __post_init__(self) -> None:
        checks = {
            "lookahead_time": (self.lookahead_time > 0, "> 0 s"),
            "min_lookahead": (self.min_lookahead > 0, "> 0 m"),
            "speed_gain": (self.speed_gain > 0, "> 0 1/s"),
            "max_accel": (0 < self.max_accel <= ACCEL_MAX, f"in (0, {ACCEL_MAX}] m/s^2"),
            "max_decel": (0 < self.max_decel <= -ACCEL_MIN, f"in (0, {-ACCEL_MIN}] m/s^2"),
            "max_steer": (0 < self.max_steer <= STEER_MAX, f"in (0, {STEER_MAX}] rad"),
            "max_jerk": (self.max_jerk > 0, "> 0 m/s^3"),
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                raise ConfigError(f"TrackingController.{name}: expected {expected}, got {getattr(self, name)!r}")

    def __call__(self, ego: EgoState, trajectory: Tensor, speeds: Tensor | None = None) -> EgoAction:
        """Action [B] tracking `trajectory [B, T, 2]` (ego frame), optionally at `speeds [B, T]` m/s."""
        _check_inputs(ego, trajectory, speeds)
        accel, steer = self.command(ego.speed, ego.accel, ego.wheelbase, trajectory, speeds)
        return EgoAction(accel=accel, steer=steer)

    def command(
        self,
        speed: Tensor,
        last_accel: Tensor,
        wheelbase: Tensor,
        trajectory: Tensor,
        speeds: Tensor | None,
        target_speed: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(accel, steer) [N] for vehicles at `speed`, having applied `last_accel`, tracking `trajectory
        [N, T, 2]` (rear-axle frame) at `speeds [N, T]` (or None). `target_speed [N]`, when given, is the
        planned speed `lookahead_time` ahead (what `speeds` would give; a caller that has it saves the
        lookup). Unchecked tensor arithmetic, so the planner runs the same law on its proposals (and
        exports it)."""
        points = torch.cat((torch.zeros_like(trajectory[:, :1]), trajectory), dim=1)  # (N, T+1, 2)
        seg = points[:, 1:] - points[:, :-1]  # (N, T, 2)
        seg_len = torch.sqrt(seg[..., 0] * seg[..., 0] + seg[..., 1] * seg[..., 1])  # (N, T)
        steer = self._steer(speed, wheelbase, points, seg, seg_len)
        if target_speed is None:
            target_speed = self._target_speed(speed, seg_len, speeds)
        accel = self.speed_gain * (target_speed - speed)
        stopping = target_speed < STOP_SPEED
        accel = torch.where(stopping, accel.clamp_max(-HOLD_DECEL), accel)
        step = self.max_jerk * self.timing.sim_dt
        accel = torch.minimum(torch.maximum(accel, last_accel - step), last_accel + step)
        return accel.clamp(-self.max_decel, self.max_accel), steer

    def _steer(self, speed: Tensor, wheelbase: Tensor, points: Tensor, seg: Tensor, seg_len: Tensor) -> Tensor:
        T = seg.shape[1]
        travelled = torch.cumsum(seg_len, dim=1)  # (N, T) arc length at the end of each segment
        lookahead = (speed * self.lookahead_time).clamp_min(self.min_lookahead)  # (N,)
        # The segment where the lookahead distance falls; past the end, the last point.
        k = (travelled < lookahead.unsqueeze(1)).sum(dim=1).clamp_max(T - 1)  # (N,)
        # `select`, not `squeeze`: an exported squeeze under a dynamic batch becomes an ONNX If.
        start = travelled.gather(1, k.unsqueeze(1)).select(1, 0) - seg_len.gather(1, k.unsqueeze(1)).select(1, 0)
        length = seg_len.gather(1, k.unsqueeze(1)).select(1, 0)
        frac = ((lookahead - start) / length.clamp_min(1e-6)).clamp(0.0, 1.0)
        at = k.view(-1, 1, 1).expand(-1, 1, 2)
        target = points.gather(1, at).select(1, 0) + seg.gather(1, at).select(1, 0) * frac.unsqueeze(-1)  # (N, 2)
        distance2 = (target[:, 0] * target[:, 0] + target[:, 1] * target[:, 1]).clamp_min(NEAR_TARGET**2)
        curvature = 2.0 * target[:, 1] / distance2  # the circle through the ego and the target
        return torch.atan(wheelbase * curvature).clamp(-self.max_steer, self.max_steer)

    def _target_speed(self, speed: Tensor, seg_len: Tensor, speeds: Tensor | None) -> Tensor:
        """Planned speed at `lookahead_time`, linear between samples; now = the current speed."""
        dt = self.timing.sample_dt
        T = seg_len.shape[1]
        if speeds is None:
            values = seg_len / dt  # mean speed over each sample interval, at its middle
            times = [0.0] + [(k + 0.5) * dt for k in range(T)]
        else:
            values = speeds.clamp_min(0.0)
            times = [0.0] + [(k + 1) * dt for k in range(T)]
        values = torch.cat((speed.unsqueeze(1), values.to(speed.dtype)), dim=1)  # (B, T+1)
        t = min(self.lookahead_time, times[-1])
        i = min(max(bisect.bisect_right(times, t) - 1, 0), T - 1)
        w = (t - times[i]) / (times[i + 1] - times[i])
        return values[:, i] + (values[:, i + 1] - values[:, i]) * w


def _check_inputs(ego: EgoState, trajectory: Tensor, speeds: Tensor | None) -> None:
    B = ego.speed.shape[0]
    if trajectory.dim() != 3 or trajectory.shape[0] != B or trajectory.shape[2] != 2 or trajectory.shape[1] < 1:
        raise ContractError(
            f"TrackingController: trajectory must have shape [B={B}, T>=1, 2], got {tuple(trajectory.shape)}"
        )
    _check_finite("trajectory", trajectory)
    if speeds is not None:
        if tuple(speeds.shape) != tuple(trajectory.shape[:2]):
            raise ContractError(
                f"TrackingController: speeds must have shape {list(trajectory.shape[:2])}, got {tuple(speeds.shape)}"
            )
        _check_finite("speeds", speeds)


def _check_finite(name: str, values: Tensor) -> None:
    bad = ~torch.isfinite(values).flatten(1).all(dim=1)
    if bool(bad.any()):
        episode = int(bad.nonzero()[0, 0])
        raise ContractError(f"TrackingController: {name} must be finite, episode {episode} has NaN or inf")


def centre_plan_to_rear_axle(trajectory: Tensor, wheelbase: Tensor) -> Tensor:
    """Policies plan the box centre in the centre-origin ego frame (`PolicyOutput`);
    the controller tracks the rear axle in the rear-axle frame.

    Each planned centre position is moved back by `wheelbase / 2` along the
    plan's heading there (the rear axle trails the centre on the same path), then
    the origin shifts from the centre to the rear axle, `wheelbase / 2` behind it.
    `trajectory [B, T, 2]`, `wheelbase [B]` -> [B, T, 2].
    """
    half = (0.5 * wheelbase)[:, None, None]  # (B, 1, 1)
    yaw = plan_heading(trajectory)  # (B, T)
    heading = torch.stack((torch.cos(yaw), torch.sin(yaw)), dim=-1)
    shift = torch.cat((half, torch.zeros_like(half)), dim=-1)  # (B, 1, 2)
    return trajectory - heading * half + shift
