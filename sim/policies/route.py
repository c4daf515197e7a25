"""Route-relative geometry shared by the rule-based baselines (ego frame)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sim.geometry import interpolate_polyline, project_to_polyline
from sim.types import ObjectList, SensorFrame


@dataclass(frozen=True)
class RouteObjects:
    """Objects in route coordinates, [B, M] each, ego frame.

    Attributes:
        s: arc length along the route from the ego, m.
        lat: lateral offset from the route (left > 0), m.
        v_s: velocity along the route, m/s.
        v_lat: velocity across the route, m/s.
        half_length: m.
        half_width: m.
        use: bool, the object is believed to exist (ground truth, or score >= threshold).
    """

    s: Tensor
    lat: Tensor
    v_s: Tensor
    v_lat: Tensor
    half_length: Tensor
    half_width: Tensor
    use: Tensor


def route_arclength(frame: SensorFrame) -> Tensor:
    """Cumulative arc length [B, R] of the route polyline, from its first point."""
    seg = (frame.route[:, 1:] - frame.route[:, :-1]).norm(dim=-1)
    zero = torch.zeros_like(seg[:, :1])
    return torch.cat((zero, seg.cumsum(-1)), dim=-1)


def objects_on_route(
    frame: SensorFrame, objects: ObjectList, threshold: float | None, time: float = 0.0
) -> RouteObjects:
    """Project objects, moved `time` s ahead at constant velocity, onto the route.

    `threshold` None keeps every valid object (ground truth); otherwise objects
    scoring below it are not believed.
    """
    route_s = route_arclength(frame)  # (B, R)
    M = objects.xy.shape[1]
    pts = frame.route.unsqueeze(1).expand(-1, M, -1, -1)  # (B, M, R, 2)
    table = route_s.unsqueeze(1).expand(-1, M, -1)  # (B, M, R)
    s, lat = _project_extended(pts, table, objects.xy + objects.velocity * time)
    _, tangent = interpolate_polyline(pts, table, s)
    c, sn = torch.cos(tangent), torch.sin(tangent)
    vx, vy = objects.velocity[..., 0], objects.velocity[..., 1]
    use = objects.valid if threshold is None else objects.valid & (objects.score >= threshold)
    return RouteObjects(
        s=s,
        lat=lat,
        v_s=c * vx + sn * vy,
        v_lat=-sn * vx + c * vy,
        half_length=0.5 * objects.length,
        half_width=0.5 * objects.width,
        use=use,
    )


def _project_extended(pts: Tensor, table: Tensor, xy: Tensor) -> tuple[Tensor, Tensor]:
    """Project onto the route, extended straight beyond both ends.

    A plain polyline projection clamps everything behind the ego to s = 0 (and
    beyond the route's end to its length), which would put a car 20 m behind
    right at the ego's bumper; extending the end segments keeps them where they are.
    """
    s, lat = project_to_polyline(pts, table, xy)
    ends = ((0, pts[..., 1, :] - pts[..., 0, :], -1.0), (-1, pts[..., -1, :] - pts[..., -2, :], 1.0))
    for end, tangent, outward in ends:
        unit = tangent / tangent.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        rel = xy - pts[..., end, :]
        along = (rel * unit).sum(-1)
        across = unit[..., 0] * rel[..., 1] - unit[..., 1] * rel[..., 0]
        beyond = along * outward > 0
        s = torch.where(beyond, table[..., end] + along, s)
        lat = torch.where(beyond, across, lat)
    return s, lat


def route_points(frame: SensorFrame, s: Tensor, lateral: Tensor | None = None) -> Tensor:
    """Ego-frame points [B, ..., 2] at arc lengths `s [B, ...]` along the route, shifted
    `lateral` m to the left of it when given."""
    route_s = route_arclength(frame)
    extra = s.dim() - 1
    shape = (s.shape[0],) + (1,) * extra
    pts = frame.route.reshape(shape[:1] + (1,) * extra + frame.route.shape[1:])
    pts = pts.expand(*s.shape, *frame.route.shape[1:])
    table = route_s.reshape(shape[:1] + (1,) * extra + route_s.shape[1:]).expand(*s.shape, route_s.shape[-1])
    xy, yaw = interpolate_polyline(pts, table, s)
    if lateral is not None:
        normal = torch.stack((-torch.sin(yaw), torch.cos(yaw)), dim=-1)
        xy = xy + normal * lateral.unsqueeze(-1)
    return xy
