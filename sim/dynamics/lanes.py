"""Fast arc-length lookup on the map's paths for per-step dynamics.

`sim.geometry.path_pose` gathers every agent's whole polyline (`[B, N, P]`),
which costs tens of ms at B=1024, N=32. Here an agent's segment is found from
a guess (last step's segment, or even spacing) with one secant step, checked,
and only where that fails by a branchless binary search that gathers one point
per halving; poses are read from the two points around `s`. Positions follow
`path_pose` (linear between points, extended straight past either end,
curvature of the segment's first point); yaw interpolates `path_yaw` (see
`pose_at`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sim.geometry import wrap_angle
from sim.state import RoadMap


def heading_of(dx: Tensor, dy: Tensor) -> Tensor:
    """atan2(dy, dx) in float64, returned in the input dtype.

    torch's float32 atan2 on CPU gives different last bits in its vectorised
    and scalar loops, so an episode's result would depend on where it sits in
    the batch; float64 atan2 agrees in both.
    """
    return torch.atan2(dy.double(), dx.double()).to(dx.dtype)


@dataclass(frozen=True)
class PathPoint:
    """Where arc length `s` falls on `path`: segment `index` (point i to i+1) and
    `frac` in [0, 1] along it. All fields [B, N]."""

    path: Tensor
    s: Tensor
    index: Tensor
    frac: Tensor


def _flat_rows(field: Tensor, path: Tensor, index: Tensor) -> Tensor:
    """field [B, L, P] at (path, index) [B, N] -> [B, N]."""
    B, L, P = field.shape
    return torch.gather(field.reshape(B, L * P), 1, path * P + index)


class _Rows:
    """`path_s` of each agent's path, read one point at a time: [B, N] gathers."""

    def __init__(self, path_s: Tensor, path: Tensor):
        B, L, P = path_s.shape
        self.flat = path_s.reshape(B, L * P)
        self.base = path * P
        self.last = P - 2  # the last segment starts at point P - 2

    def at(self, index: Tensor) -> Tensor:
        return torch.gather(self.flat, 1, self.base + index)


def _search(rows: _Rows, s: Tensor) -> Tensor:
    """Binary lifting: the largest i <= P - 2 with path_s[i] <= s (0 when none). [B, N] long."""
    last = rows.last
    lo = torch.zeros_like(rows.base)
    step = 1 << max(last.bit_length() - 1, 0)
    while step >= 1:
        cand = (lo + step).clamp_max(last)
        ok = (rows.at(cand) <= s).long()
        lo = lo + ok * (cand - lo)
        step //= 2
    return lo


def _jump(rows: _Rows, s: Tensor, start: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One secant step from segment `start` towards the segment holding `s`:
    (index, path_s[index], path_s[index + 1], ok) where ok marks agents for
    which index is exactly `_search`'s answer."""
    last = rows.last
    i = start.clamp(0, last)
    a, b = rows.at(i), rows.at(i + 1)
    # Exact in one jump where the spacing is locally uniform (and paths are resampled evenly).
    i = (i + torch.floor((s - a) / (b - a).clamp_min(1e-6)).clamp(-4.0 * last, 4.0 * last).long()).clamp(0, last)
    s0, s1 = rows.at(i), rows.at(i + 1)
    ok = ((s0 <= s) | (i == 0)) & ((s1 > s) | (i == last))
    return i, s0, s1, ok


def locate(roadmap: RoadMap, path: Tensor, s: Tensor, hint: Tensor | None = None) -> PathPoint:
    """Segment of `path [B, N]` containing arc length `s [B, N]` (clamped to the path).

    A secant jump from `hint [B, N]` (e.g. last step's segment) or, without
    one, from the even-spacing guess s / length * (P - 1) finds the segment in
    one step on evenly resampled paths; where it does not for some agent, a
    binary search over the whole path runs instead. The answer is the same either way.
    """
    path = path.clamp_min(0)
    rows = _Rows(roadmap.path_s, path)
    if hint is None:
        length = rows.at(torch.full_like(path, rows.last + 1))
        hint = torch.floor(s / length.clamp_min(1e-6) * (rows.last + 1)).clamp(0.0, float(rows.last)).long()
    index, s0, s1, ok = _jump(rows, s, hint)
    if not bool(ok.all()):
        index = _search(rows, s)
        s0, s1 = rows.at(index), rows.at(index + 1)
    frac = ((s - s0) / (s1 - s0).clamp_min(1e-6)).clamp(0.0, 1.0)
    return PathPoint(path=path, s=s, index=index, frac=frac)


def _flat_index(roadmap: RoadMap, path: Tensor, index: Tensor) -> Tensor:
    """Index [B, N] of point `index` of `path` in the map's fields flattened to [B, L * P]."""
    return path.clamp_min(0) * roadmap.path_s.shape[-1] + index


def _centre(roadmap: RoadMap, flat: Tensor, frac: Tensor) -> tuple[Tensor, Tensor]:
    """Centreline point and unit tangent [B, N, 2] at `frac` along the segment starting at `flat`."""
    B, L, P, _ = roadmap.path_xy.shape
    points = roadmap.path_xy.reshape(B, L * P, 2)
    at = flat.unsqueeze(-1).expand(-1, -1, 2)
    p0 = torch.gather(points, 1, at)
    seg = torch.gather(points, 1, at + 1) - p0  # (B, N, 2) to the segment's end point
    length = torch.sqrt(seg[..., 0] * seg[..., 0] + seg[..., 1] * seg[..., 1]).clamp_min(1e-9)
    return p0 + seg * frac.unsqueeze(-1), seg / length.unsqueeze(-1)


def centre_at_index(roadmap: RoadMap, path: Tensor, index: Tensor, frac: Tensor) -> tuple[Tensor, Tensor]:
    """Centreline point [B, N, 2] and unit tangent [B, N, 2] at fractional index `index + frac`."""
    return _centre(roadmap, _flat_index(roadmap, path, index), frac)


def arc_length_at_index(roadmap: RoadMap, path: Tensor, index: Tensor, frac: Tensor) -> Tensor:
    """Arc length [B, N] of `path` at fractional index `index + frac`."""
    path = path.clamp_min(0)
    s0 = _flat_rows(roadmap.path_s, path, index)
    s1 = _flat_rows(roadmap.path_s, path, index + 1)
    return s0 + (s1 - s0) * frac


def curvature_at(roadmap: RoadMap, where: PathPoint) -> Tensor:
    """Signed curvature [B, N] of the segment at `where` (its first point's value)."""
    return _flat_rows(roadmap.path_curvature, where.path, where.index)


@dataclass(frozen=True)
class Pose:
    """World pose on a path: xy [B, N, 2], yaw [B, N], curvature [B, N]."""

    xy: Tensor
    yaw: Tensor
    curvature: Tensor


def pose_at(roadmap: RoadMap, where: PathPoint, d: Tensor | None = None) -> Pose:
    """Pose at `where` with lateral offset `d [B, N]` (left > 0).

    Position as `geometry.path_pose` (linear between points, offset along the
    segment normal, extended straight past either end). The yaw, unlike
    `path_pose`'s segment direction, interpolates `path_yaw` between the two
    points: a polyline's chord direction is off the true tangent by up to half
    a segment's turn, which tilts an agent's view of the road ahead enough to
    lose leaders on curves.
    """
    B = where.path.shape[0]
    flat = _flat_index(roadmap, where.path, where.index)
    xy, tangent = _centre(roadmap, flat, where.frac)
    yaws = roadmap.path_yaw.reshape(B, -1)
    yaw0 = torch.gather(yaws, 1, flat)
    turn = wrap_angle(torch.gather(yaws, 1, flat + 1) - yaw0)
    yaw = wrap_angle(yaw0 + where.frac * turn)
    curvature = torch.gather(roadmap.path_curvature.reshape(B, -1), 1, flat)
    length = torch.gather(roadmap.path_length, 1, where.path)
    # Past either end, extend straight so agents leaving a path keep moving smoothly.
    over = (where.s - length).clamp_min(0.0) + where.s.clamp_max(0.0)
    offset = over.unsqueeze(-1) * tangent
    if d is not None:
        normal = torch.stack((-tangent[..., 1], tangent[..., 0]), dim=-1)
        offset = offset + normal * d.unsqueeze(-1)
    return Pose(xy=xy + offset, yaw=yaw, curvature=curvature)


def project_near(roadmap: RoadMap, path: Tensor, xy: Tensor, near_s: Tensor, window: int = 8) -> Tensor:
    """Arc length [B, K] of the projection of `xy [B, K, 2]` on `path [B, K]`,
    searching the `window` segments from one before the segment at `near_s [B, K]`.

    Exactly `geometry.project_to_path` restricted to those segments: a point
    that moves continuously along the path (like the ego each step) finds its
    nearest segment in the window at a fraction of the cost of scanning them all.
    """
    path = path.clamp_min(0)
    B, L, P, _ = roadmap.path_xy.shape
    start = locate(roadmap, path, near_s).index - 1  # (B, K)
    index = (start.unsqueeze(-1) + torch.arange(window, device=path.device)).clamp(0, P - 2)  # (B, K, W)
    flat = (path.unsqueeze(-1) * P + index).flatten(1)  # (B, K * W)
    px = roadmap.path_xy[..., 0].reshape(B, L * P)
    py = roadmap.path_xy[..., 1].reshape(B, L * P)
    shape = index.shape
    ax, ay = torch.gather(px, 1, flat).view(shape), torch.gather(py, 1, flat).view(shape)
    bx, by = torch.gather(px, 1, flat + 1).view(shape), torch.gather(py, 1, flat + 1).view(shape)
    abx, aby = bx - ax, by - ay
    rx, ry = xy[..., 0].unsqueeze(-1) - ax, xy[..., 1].unsqueeze(-1) - ay
    t = ((rx * abx + ry * aby) / (abx * abx + aby * aby).clamp_min(1e-9)).clamp(0.0, 1.0)  # (B, K, W)
    ex, ey = rx - t * abx, ry - t * aby
    nearest = (ex * ex + ey * ey).argmin(dim=-1, keepdim=True)  # (B, K, 1)
    s_flat = roadmap.path_s.reshape(B, L * P)
    s0 = torch.gather(s_flat, 1, flat).view(shape)
    s1 = torch.gather(s_flat, 1, flat + 1).view(shape)
    s = s0 + (s1 - s0) * t
    return torch.gather(s, -1, nearest).squeeze(-1)
