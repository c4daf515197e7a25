"""Proposals driven before they are scored: the simulator's tracking controller and kinematic bicycle.

PDM-Closed scores what the ego will drive, not the reference it is given. Each
proposal's reference (box-centre poses and speeds at the plan steps) is held
fixed, and the ego is driven along it from its current speed and acceleration
by `sim.controller.TrackingController.command` (pure pursuit + speed control
with the actuator's jerk limit) and `sim.dynamics.ego.bicycle_step`, the code
the simulator itself runs. At simulated time tau the controller sees the
reference re-timed to start at tau, in the simulated ego's frame, continued at
its last velocity past its end: what the closed loop drives when the plan is
held (`PreviousPlan.retimed`, tested against the simulator itself). The
re-timing and everything else is static slicing and tensor arithmetic, so the
simulation exports and differentiates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from core.config import Timing
from sim.controller import TrackingController
from sim.dynamics.ego import bicycle_step


@dataclass(frozen=True)
class Reference:
    """What a proposal asks the ego to drive, [B, C, T] unless noted, ego frame now, box centre.

    Attributes:
        xy: [B, C, T, 2] positions at the plan steps, m.
        yaw: headings there, rad.
        speed: speeds there, m/s.
    """

    xy: Tensor
    yaw: Tensor
    speed: Tensor


@dataclass(frozen=True)
class Driven:
    """What the ego drives following each reference, at the plan steps, [B, C, T] unless noted.

    Attributes:
        xy: [B, C, T, 2] box centre, m, ego frame now.
        yaw: heading, rad.
        speed: m/s.
        accel: mean longitudinal acceleration over the step before, m/s^2.
        jerk: the largest |change of acceleration| / dt within the step before, m/s^3.
        yaw_rate: mean yaw rate over the step before, rad/s.
    """

    xy: Tensor
    yaw: Tensor
    speed: Tensor
    accel: Tensor
    jerk: Tensor
    yaw_rate: Tensor

    @property
    def lateral_accel(self) -> Tensor:
        return self.speed * self.yaw_rate


# Plan points the controller is shown: its lookahead (0.8 s of travel, at least 4 m) falls within the first
# 2.4 s of a plan, so later points do not change its command; only a plan averaging under about 1.7 m/s
# covers less than 4 m in that time, and then the last point shown stands in for the lookahead point.
CONTROLLER_POINTS = 6


def drive(reference: Reference, speed: Tensor, accel: Tensor, wheelbase: float, timing: Timing,
          substeps: int) -> Driven:  # fmt: skip
    """Drive every reference [B, C, ...] from the ego's `speed [B]` and last `accel [B]` (m/s, m/s^2) with
    `substeps` controller + bicycle steps per plan step."""
    B, C, T = reference.speed.shape
    dt = timing.sample_dt / substeps
    controller = TrackingController(timing=dataclasses.replace(timing, sim_dt=dt))
    shown = min(T, CONTROLLER_POINTS)
    rear_table, speed_table = _tables(reference, speed, wheelbase)  # (B, C, 2T+1, 2), (B, C, 2T+1)
    targets = _target_speeds(speed_table, controller.lookahead_time, timing, substeps)  # (B, C, T * substeps)
    v = speed[:, None].expand(B, C)
    a = accel[:, None].expand(B, C)
    xy = torch.stack((torch.full_like(v, -0.5 * wheelbase), torch.zeros_like(v)), dim=-1)  # rear axle now
    yaw = torch.zeros_like(v)
    base = torch.full_like(v.reshape(-1), wheelbase)
    wheelbases = base.reshape(B, C)
    record: dict[str, list[Tensor]] = {name: [] for name in ("xy", "yaw", "speed", "accel", "jerk", "yaw_rate")}
    v_start, yaw_start, jerk = v, yaw, torch.zeros_like(v)
    for k in range(T * substeps):
        plan = _lerp(rear_table, k // substeps + 1, shown, (k % substeps) / substeps)  # re-timed to start now
        local = _to_local(plan, xy, yaw)  # (B, C, shown, 2) in the simulated rear-axle frame
        command, steer = controller.command(v.reshape(-1), a.reshape(-1), base, local.reshape(B * C, shown, 2),
                                            None, targets[..., k].reshape(-1))  # fmt: skip
        xy, yaw, v_next, _ = bicycle_step(xy, yaw, v, command.reshape(B, C), steer.reshape(B, C), wheelbases, dt)
        applied = (v_next - v) / dt
        jerk = torch.maximum(jerk, (applied - a).abs() / dt)
        v, a = v_next, applied
        if (k + 1) % substeps == 0:
            heading = torch.stack((torch.cos(yaw), torch.sin(yaw)), dim=-1)
            record["xy"].append(xy + 0.5 * wheelbase * heading)
            record["yaw"].append(yaw)
            record["speed"].append(v)
            record["accel"].append((v - v_start) / timing.sample_dt)
            record["jerk"].append(jerk)
            record["yaw_rate"].append((yaw - yaw_start) / timing.sample_dt)
            v_start, yaw_start, jerk = v, yaw, torch.zeros_like(v)
    stacked = {name: torch.stack(values, dim=2) for name, values in record.items()}
    return Driven(**stacked)


def _target_speeds(speed_table: Tensor, lookahead: float, timing: Timing, substeps: int) -> Tensor:
    """[B, C, T * substeps] the planned speed `lookahead` s after each simulated time (what
    `TrackingController` reads from the re-timed plan; linear between plan steps)."""
    T = (speed_table.shape[-1] - 1) // 2
    columns = []
    for k in range(T * substeps):
        position = k / substeps + lookahead / timing.sample_dt  # in plan steps from now
        low = min(int(position // 1), speed_table.shape[-1] - 2)
        frac = position - low
        columns.append(speed_table[..., low] + (speed_table[..., low + 1] - speed_table[..., low]) * frac)
    return torch.stack(columns, dim=-1)


def _tables(reference: Reference, speed: Tensor, wheelbase: float) -> tuple[Tensor, Tensor]:
    """Rear-axle positions and speeds at plan times 0, dt, ..., 2T dt: now, the reference's T steps, then
    T more continuing its last step at constant velocity (a held plan runs out as the ego drives on)."""
    B, C, T = reference.speed.shape
    heading = torch.stack((torch.cos(reference.yaw), torch.sin(reference.yaw)), dim=-1)
    rear = reference.xy - 0.5 * wheelbase * heading  # (B, C, T, 2)
    now = torch.zeros_like(rear[:, :, :1])
    now = torch.cat((now[..., :1] - 0.5 * wheelbase, now[..., 1:]), dim=-1)
    points = torch.cat((now, rear), dim=2)  # (B, C, T+1, 2)
    step = points[:, :, -1:] - points[:, :, -2:-1]
    ahead = torch.arange(1, T + 1, dtype=rear.dtype, device=rear.device)[:, None]  # (T, 1)
    rear_table = torch.cat((points, points[:, :, -1:] + step * ahead), dim=2)
    speeds = torch.cat((speed[:, None, None].expand(B, C, 1), reference.speed), dim=2)
    speed_table = torch.cat((speeds, speeds[:, :, -1:].expand(B, C, T)), dim=2)
    return rear_table, speed_table


def _lerp(table: Tensor, first: int, count: int, frac: float) -> Tensor:
    """Rows first..first+count-1 of `table [B, C, N, ...]` moved `frac` of the way to the next rows."""
    low = table[:, :, first : first + count]
    if frac == 0.0:
        return low
    return low + (table[:, :, first + 1 : first + 1 + count] - low) * frac


def _to_local(points: Tensor, xy: Tensor, yaw: Tensor) -> Tensor:
    """`points [B, C, T, 2]` into the frame at `xy [B, C, 2]` facing `yaw [B, C]`."""
    c, s = torch.cos(yaw)[..., None], torch.sin(yaw)[..., None]
    dx, dy = points[..., 0] - xy[..., None, 0], points[..., 1] - xy[..., None, 1]
    return torch.stack((c * dx + s * dy, c * dy - s * dx), dim=-1)


def with_halfway(values: Tensor, dim: int) -> Tensor:
    """`values` at the plan steps along `dim` (T) -> 2T steps, the points halfway between them (and
    between now and the first step, extrapolated from the first two) interleaved: contact checks at
    twice the plan rate, so fast agents do not pass through the ego between two steps."""
    dim = dim % values.dim()
    first, second = values.narrow(dim, 0, 1), values.narrow(dim, 1, 1)
    previous = torch.cat((2 * first - second, values.narrow(dim, 0, values.shape[dim] - 1)), dim=dim)
    return torch.stack((0.5 * (previous + values), values), dim=dim + 1).flatten(dim, dim + 1)
