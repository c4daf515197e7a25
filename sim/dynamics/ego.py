"""The ego: a kinematic bicycle about the rear axle.

yaw_rate = v tan(steer) / wheelbase. Over one step the steering angle is held,
so the rear axle moves on a circle of curvature k = tan(steer) / wheelbase and
the update is the exact arc: with the distance travelled ds (exact for constant
acceleration, including stopping within the step), the heading turns by k ds
and the rear axle moves along the chord, length ds * sinc(k ds / 2), in the
direction yaw + k ds / 2. The speed is clamped at 0: the ego never reverses.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from sim.dynamics.lanes import project_near
from sim.geometry import ego_center, wrap_angle
from sim.state import EgoState, RoadMap


def travelled(speed: Tensor, accel: Tensor, dt: float) -> tuple[Tensor, Tensor]:
    """Speed after `dt` (>= 0) and distance covered under constant `accel`, stopping at 0."""
    unclamped = speed + accel * dt
    next_speed = unclamped.clamp_min(0.0)
    # Time spent moving: all of dt, or until the speed reaches 0 when braking to a stop.
    stops = unclamped < 0
    moving_time = torch.where(stops, speed / (-accel).clamp_min(1e-9), torch.full_like(speed, dt))
    return next_speed, 0.5 * (speed + next_speed) * moving_time


def bicycle_step(
    xy: Tensor, yaw: Tensor, speed: Tensor, accel: Tensor, steer: Tensor, wheelbase: Tensor, dt: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The rear axle's (xy [..., 2], yaw, speed, heading change) after holding `accel` and `steer` for `dt` s.

    Plain tensor arithmetic on any leading shape, so the planner simulates its proposals with the
    ego's own model (and exports it); the yaw is not wrapped.
    """
    next_speed, ds = travelled(speed, accel, dt)
    curvature = torch.tan(steer) / wheelbase
    turn = curvature * ds  # heading change over the step
    chord = ds * sinc(0.5 * turn)
    direction = yaw + 0.5 * turn
    xy = xy + chord.unsqueeze(-1) * torch.stack((torch.cos(direction), torch.sin(direction)), dim=-1)
    return xy, yaw + turn, next_speed, turn


def sinc(x: Tensor) -> Tensor:
    """sin(x) / x (1 at 0), written out: ONNX has no sinc. Near 0 the series 1 - x^2 / 6 (exact in float32)."""
    small = x.abs() < 1e-3
    safe = torch.where(small, torch.ones_like(x), x)
    return torch.where(small, 1.0 - x * x / 6.0, torch.sin(safe) / safe)


def advance_ego(ego: EgoState, accel: Tensor, steer: Tensor, dt: float) -> EgoState:
    """The ego after holding `accel [B]` (m/s^2) and `steer [B]` (rad) for `dt` s."""
    xy, yaw, next_speed, turn = bicycle_step(ego.xy, ego.yaw, ego.speed, accel, steer, ego.wheelbase, dt)
    return dataclasses.replace(
        ego,
        xy=xy,
        yaw=wrap_angle(yaw),
        speed=next_speed,
        accel=(next_speed - ego.speed) / dt,
        steer=steer,
        yaw_rate=turn / dt,
    )


def route_progress(roadmap: RoadMap, ego: EgoState) -> Tensor:
    """Arc length [B] of the ego box centre's projection on the route, never below `ego.progress`.

    The projection is `geometry.project_to_path`'s, searched over the route
    segments around the previous progress (`lanes.project_near`): the full scan
    costs more than the rest of the ego's step. Builders therefore set the
    initial `progress` to the projection of the starting pose (as
    `project_to_path` gives it). Clamping keeps lateral wobble near polyline
    vertices from making progress run backwards.
    """
    centre = ego_center(ego).unsqueeze(1)
    s = project_near(roadmap, ego.route.unsqueeze(1), centre, ego.progress.unsqueeze(1))
    return torch.maximum(ego.progress, s.squeeze(1))
