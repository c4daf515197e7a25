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


def advance_ego(ego: EgoState, accel: Tensor, steer: Tensor, dt: float) -> EgoState:
    """The ego after holding `accel [B]` (m/s^2) and `steer [B]` (rad) for `dt` s."""
    next_speed, ds = travelled(ego.speed, accel, dt)
    curvature = torch.tan(steer) / ego.wheelbase
    turn = curvature * ds  # (B,) heading change over the step
    chord = ds * torch.sinc(turn / (2.0 * torch.pi))  # torch.sinc(x) = sin(pi x) / (pi x)
    direction = ego.yaw + 0.5 * turn
    xy = ego.xy + chord.unsqueeze(-1) * torch.stack((torch.cos(direction), torch.sin(direction)), dim=-1)
    return dataclasses.replace(
        ego,
        xy=xy,
        yaw=wrap_angle(ego.yaw + turn),
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
