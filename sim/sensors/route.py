"""The ego's route ahead, sampled at equal arc-length steps, in the ego frame."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sim.geometry import path_pose
from sim.sensors.pose import SensorPose
from sim.state import WorldState


@dataclass(frozen=True)
class RouteAhead:
    """Attributes:
    points: [B, R, 2] float64, ego frame, m (past the path's end: its straight extension).
    valid: [B, R] bool, the point lies on the path.
    speed_limit: [B] float, m/s, of the route path.
    """

    points: Tensor
    valid: Tensor
    speed_limit: Tensor


def route_ahead(state: WorldState, pose: SensorPose, points: int, spacing: float) -> RouteAhead:
    """`points` points every `spacing` m from arc length `ego.progress` along path `ego.route`."""
    ego, roadmap = state.ego, state.map
    B = state.batch_size
    route = ego.route.unsqueeze(1)  # (B, 1)
    steps = torch.arange(points, dtype=ego.progress.dtype, device=state.device) * spacing
    s = ego.progress.unsqueeze(1) + steps  # (B, R)
    xy, _, _ = path_pose(roadmap, route.expand(B, points), s)  # (B, R, 2) world
    length = torch.gather(roadmap.path_length, 1, route)  # (B, 1)
    on_path = torch.gather(roadmap.path_valid, 1, route)  # (B, 1)
    return RouteAhead(
        points=pose.to_ego(xy),
        valid=(s >= 0.0) & (s <= length) & on_path,
        speed_limit=torch.gather(roadmap.path_speed_limit, 1, route).squeeze(1),
    )
