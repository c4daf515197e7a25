"""Route coordinates in the ego frame: arc length along the route, where points lie along it, and poses
along paths offset from it. Shared by the proposals, the planners and the baselines."""

from __future__ import annotations

import torch
from torch import Tensor

from sim.geometry import interpolate_polyline, project_to_polyline
from sim.types import SensorFrame


def route_arclength(frame: SensorFrame) -> Tensor:
    """Cumulative arc length [B, R] of the route polyline, from its first point."""
    return polyline_arclength(frame.route)


def polyline_arclength(points: Tensor) -> Tensor:
    """Cumulative arc length [B, R] of polylines `points [B, R, 2]`, from their first point."""
    seg = (points[:, 1:] - points[:, :-1]).norm(dim=-1)
    zero = torch.zeros_like(seg[:, :1])
    return torch.cat((zero, seg.cumsum(-1)), dim=-1)


def project_onto_route(pts: Tensor, table: Tensor, xy: Tensor) -> tuple[Tensor, Tensor]:
    """Arc length and lateral offset of `xy [..., 2]` on the route `pts [..., R, 2]` with arc lengths
    `table [..., R]`, the route extended straight beyond both ends.

    A plain polyline projection clamps everything behind the ego to s = 0 (and
    beyond the route's end to its length), which would put a car 20 m behind
    right at the ego's bumper; extending the end segments keeps them where they are.
    """
    s, lat = project_to_polyline(pts, table, xy)
    return _extend_ends(pts, table, xy, s, lat)


def _extend_ends(pts: Tensor, table: Tensor, xy: Tensor, s: Tensor, lat: Tensor) -> tuple[Tensor, Tensor]:
    """(s, lat) of the points `xy [..., 2]` beyond either end of the route `pts [..., R, 2]` (arc lengths
    `table [..., R]`; both broadcast against `xy`) measured along its end segments extended; the others'
    `s`, `lat` as given."""
    ends = ((0, pts[..., 1, :] - pts[..., 0, :], -1.0), (-1, pts[..., -1, :] - pts[..., -2, :], 1.0))
    for end, tangent, outward in ends:
        unit = tangent / tangent.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        rel = xy - pts[..., end, :]
        along = rel[..., 0] * unit[..., 0] + rel[..., 1] * unit[..., 1]
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


def _route_tables(route: Tensor, count: int) -> tuple[Tensor, Tensor]:
    """The route's points [B, count, R, 2] and arc lengths [B, count, R], expanded (views) for `count` queries."""
    B, R = route.shape[:2]
    return route[:, None].expand(B, count, R, 2), polyline_arclength(route)[:, None].expand(B, count, R)


def to_route(route: Tensor, xy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Arc length, lateral offset (left > 0) and the route's heading there, [B, ...] each, of ego-frame
    points `xy [B, ..., 2]` on the route `route [B, R, 2]` (`SensorFrame.route`; extended straight beyond
    its ends).

    Each point is projected onto the two segments beside its nearest route vertex, not onto every
    segment: the same answer wherever the nearest segment touches the nearest vertex (everywhere within
    half a curve's radius of a route sampled every few metres), at a fraction of the cost."""
    B, shape = xy.shape[0], xy.shape[1:-1]
    flat = xy.reshape(B, -1, 2)  # (B, X, 2)
    R = route.shape[1]
    table = polyline_arclength(route)  # (B, R)
    dx = flat[:, :, None, 0] - route[:, None, :, 0]
    dy = flat[:, :, None, 1] - route[:, None, :, 1]
    nearest = (dx * dx + dy * dy).argmin(-1)  # (B, X)
    best = None
    for first in ((nearest - 1).clamp(0, R - 2), nearest.clamp(0, R - 2)):
        a, b = _vertex(route, first), _vertex(route, first + 1)  # (B, X, 2)
        ab, ap = b - a, flat - a
        length = (ab[..., 0] * ab[..., 0] + ab[..., 1] * ab[..., 1]).clamp_min(1e-12).sqrt()
        t = ((ap[..., 0] * ab[..., 0] + ap[..., 1] * ab[..., 1]) / (length * length)).clamp(0.0, 1.0)
        gap = ap - ab * t[..., None]
        candidate = (gap[..., 0] * gap[..., 0] + gap[..., 1] * gap[..., 1],
                     table.gather(1, first) + t * length,
                     (ab[..., 0] * ap[..., 1] - ab[..., 1] * ap[..., 0]) / length,
                     torch.atan2(ab[..., 1], ab[..., 0]))  # fmt: skip
        if best is None:
            best = candidate
        else:
            closer = candidate[0] < best[0]
            best = tuple(torch.where(closer, new, old) for new, old in zip(candidate, best, strict=True))
    _, s, lat, tangent = best
    s, lat = _extend_ends(route[:, None], table[:, None], flat, s, lat)
    first_heading = torch.atan2(route[:, 1, 1] - route[:, 0, 1], route[:, 1, 0] - route[:, 0, 0])[:, None]
    last_heading = torch.atan2(route[:, -1, 1] - route[:, -2, 1], route[:, -1, 0] - route[:, -2, 0])[:, None]
    tangent = torch.where(s < 0, first_heading, torch.where(s > table[:, -1:], last_heading, tangent))
    return s.reshape(B, *shape), lat.reshape(B, *shape), tangent.reshape(B, *shape)


def _vertex(route: Tensor, index: Tensor) -> Tensor:
    """route[b, index[b, x]] -> [B, X, 2]."""
    return route.gather(1, index[..., None].expand(*index.shape, 2))


def offset_poses(route: Tensor, s: Tensor, offset: Tensor, slope: Tensor) -> tuple[Tensor, Tensor]:
    """Positions [B, ..., 2] and headings [B, ...] of paths at arc lengths `s [B, ...]` along the route
    `route [B, R, 2]`, `offset [B, ...]` m to its left, the offset changing by `slope` m per m there."""
    B, shape = s.shape[0], s.shape[1:]
    flat = s.reshape(B, -1)
    pts, table = _route_tables(route, flat.shape[1])
    centre, route_yaw = interpolate_polyline(pts, table, flat)
    route_yaw = route_yaw.reshape(B, *shape)
    normal = torch.stack((-torch.sin(route_yaw), torch.cos(route_yaw)), dim=-1)
    xy = centre.reshape(B, *shape, 2) + normal * offset.unsqueeze(-1)
    return xy, route_yaw + torch.atan(slope)


def smoothstep(x: Tensor) -> tuple[Tensor, Tensor]:
    """Value and derivative of 3x^2 - 2x^3 on [0, 1], constant outside: how an offset is blended in."""
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x), 6.0 * x * (1.0 - x)


def ramped_offset(s: Tensor, start: Tensor, target: Tensor, ramp: Tensor) -> tuple[Tensor, Tensor]:
    """The lateral offset of a path at arc length `s` that blends from `start` (where the ego is now) to
    `target` over `ramp` m, and its slope (m per m); all broadcast together."""
    blend, derivative = smoothstep(s / ramp)
    change = target - start
    return start + change * blend, change * derivative / ramp
