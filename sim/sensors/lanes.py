"""The lane centrelines near the ego, from the HD map, as fixed-size masked polylines in the ego frame.

What a real stack reads from its HD map: every lane (`RoadMap` path) whose
centreline passes within `LANE_RADIUS` of the ego, nearest first, each sampled
every `LANE_SPACING` m in its direction of travel. The order of the points
carries what the map raster cannot: which way a lane runs, so a planner can
tell the lane beside it from the oncoming one, and a predictor which way a
standing car will go.

Each lane's window is placed where the ego looks, whichever way the lane runs:
a lane running the ego's way is kept from `LANE_BEHIND` m behind the ego's foot
on it to `LANE_AHEAD` m ahead of it, an oncoming lane from `LANE_AHEAD` m ahead
of the ego (where its traffic comes from) to `LANE_BEHIND` m behind, a crossing
lane symmetrically; in between the window slides with the cosine of the angle
between the lane and the ego's heading (clamped to the lane's start).

Paths that share their points (the straight, left and right paths of one
approach, up to where they part) each keep a slot: they are different lanes
through the junction.

Points past either end of a lane, and slots beyond the lanes in range, are
masked (`valid` false, position 0). The ego's foot on each lane is found in
float64 like the rest of the sensor geometry (`sim.sensors.pose`); slots are
ordered by distance with a stable sort, so a frame does not depend on its batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sim.geometry import interpolate_polyline, local_to_world, path_pose, project_to_polyline
from sim.sensors.pose import GEOMETRY_DTYPE, SensorPose
from sim.state import RoadMap

LANE_SLOTS = 16  # lanes per frame: a four-way junction with two lanes per approach has 16 paths
LANE_POINTS = 24  # points per lane
LANE_SPACING = 3.0  # m between points along a lane
LANE_BEHIND = 20.0  # m of a lane running the ego's way kept behind the ego (24 points then reach 49 m ahead)
LANE_AHEAD = (LANE_POINTS - 1) * LANE_SPACING - LANE_BEHIND  # 49 m
LANE_RADIUS = 40.0  # m: a lane whose centreline passes farther from the ego is left out


@dataclass(frozen=True)
class LanesNear:
    """Attributes:
    points: [B, LANE_SLOTS, LANE_POINTS, 2] float64, ego frame, m, in each lane's direction of travel.
    valid: [B, LANE_SLOTS, LANE_POINTS] bool, the point lies on a lane in range.
    """

    points: Tensor
    valid: Tensor


def lanes_near(roadmap: RoadMap, pose: SensorPose) -> LanesNear:
    """The lanes of `roadmap` near the sensor at `pose`, nearest first (module docstring)."""
    xy, table = roadmap.path_xy.to(GEOMETRY_DTYPE), roadmap.path_s.to(GEOMETRY_DTYPE)  # (B, M, P, 2) world
    B, M = roadmap.path_valid.shape
    centre = pose.center[:, None].expand(B, M, 2)
    s_near, _ = project_to_polyline(xy, table, centre)  # (B, M) the ego's foot on each lane
    foot, lane_yaw = interpolate_polyline(xy, table, s_near)  # and the lane's heading there
    nearest_gap = (foot - centre).norm(dim=-1)
    nearest_gap = torch.where(roadmap.path_valid, nearest_gap, torch.full_like(nearest_gap, float("inf")))
    slots = min(LANE_SLOTS, M)
    path = torch.argsort(nearest_gap, dim=1, stable=True)[:, :slots]  # (B, slots), nearest first
    gap_kept = torch.gather(nearest_gap, 1, path)
    along = torch.cos(lane_yaw - pose.yaw[:, None])  # 1: the ego's way, -1: oncoming
    behind = 0.5 * (LANE_BEHIND + LANE_AHEAD) - 0.5 * (LANE_AHEAD - LANE_BEHIND) * along  # m before the foot
    start = torch.gather((s_near - behind).clamp_min(0.0), 1, path).to(roadmap.path_s.dtype)
    steps = torch.arange(LANE_POINTS, dtype=start.dtype, device=start.device) * LANE_SPACING
    s = start[..., None] + steps  # (B, slots, P)
    world, _, _ = path_pose(roadmap, path.repeat_interleave(LANE_POINTS, dim=1), s.reshape(B, -1))
    length = torch.gather(roadmap.path_length, 1, path)[..., None]
    valid = (s >= 0.0) & (s <= length) & (gap_kept <= LANE_RADIUS)[..., None]
    points = pose.to_ego(world.reshape(B, slots, LANE_POINTS, 2))
    points = torch.where(valid[..., None], points, torch.zeros_like(points))
    pad = LANE_SLOTS - slots
    if pad:
        points = torch.cat((points, points.new_zeros(B, pad, LANE_POINTS, 2)), dim=1)
        valid = torch.cat((valid, valid.new_zeros(B, pad, LANE_POINTS)), dim=1)
    return LanesNear(points, valid)


def lanes_seen_from(points: Tensor, valid: Tensor, seen_from: Tensor, pose: SensorPose) -> Tensor:
    """Lane points `[B, N, P, 2]` given in the frame of the world pose `seen_from [B, 3]` (x, y, yaw:
    a `SensorFrame.ego_pose`) re-expressed in the frame of `pose`; 0 where not `valid`, float64."""
    seen_from = seen_from.to(GEOMETRY_DTYPE)
    out = pose.to_ego(local_to_world(points.to(GEOMETRY_DTYPE), seen_from[:, :2], seen_from[:, 2]))
    return torch.where(valid[..., None], out, torch.zeros_like(out))
