"""Fast arc-length lookup on the map's paths for per-step dynamics.

`sim.geometry.path_pose` gathers every agent's whole polyline (`[B, N, P]`),
which costs tens of ms at B=1024, N=32. Here an agent's segment is found by a
branchless binary search that gathers one point per halving (`log2(P)` gathers
of `[B, N]`), and poses are read from the two points around `s`. The results
follow `path_pose`'s conventions exactly: yaw is the segment direction,
curvature is the value at the segment's first point, and past either end the
path is extended straight.
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


def _search(path_s: Tensor, path: Tensor, s: Tensor) -> Tensor:
    """Binary lifting: the largest i <= P - 2 with path_s[i] <= s (0 when none). [B, N] long."""
    last = path_s.shape[-1] - 2  # the last segment starts at point P - 2
    lo = torch.zeros_like(path)
    step = 1 << max(last.bit_length() - 1, 0)
    while step >= 1:
        cand = (lo + step).clamp_max(last)
        ok = (_flat_rows(path_s, path, cand) <= s).long()
        lo = lo + ok * (cand - lo)
        step //= 2
    return lo


def _walk_from(path_s: Tensor, path: Tensor, s: Tensor, hint: Tensor, steps: int = 2) -> Tensor | None:
    """The same segment as `_search`, found by stepping forward from `hint`, or
    None when `steps` steps do not reach it for every agent."""
    last = path_s.shape[-1] - 2
    i = hint.clamp(0, last)
    for _ in range(steps):
        i = i + ((_flat_rows(path_s, path, (i + 1).clamp_max(last + 1)) <= s) & (i < last)).long()
    starts_before = (_flat_rows(path_s, path, i) <= s) | (i == 0)
    ends_after = (_flat_rows(path_s, path, i + 1) > s) | (i == last)
    return i if bool((starts_before & ends_after).all()) else None


def locate(roadmap: RoadMap, path: Tensor, s: Tensor, hint: Tensor | None = None) -> PathPoint:
    """Segment of `path [B, N]` containing arc length `s [B, N]` (clamped to the path).

    `hint [B, N]`, a segment index at or before the answer (e.g. last step's),
    lets most calls skip the binary search; the answer is the same either way.
    """
    path = path.clamp_min(0)
    path_s = roadmap.path_s  # (B, L, P)
    index = None if hint is None else _walk_from(path_s, path, s, hint)
    if index is None:
        index = _search(path_s, path, s)
    s0 = _flat_rows(path_s, path, index)
    s1 = _flat_rows(path_s, path, index + 1)
    frac = ((s - s0) / (s1 - s0).clamp_min(1e-6)).clamp(0.0, 1.0)
    return PathPoint(path=path, s=s, index=index, frac=frac)


def centre_at_index(roadmap: RoadMap, path: Tensor, index: Tensor, frac: Tensor) -> tuple[Tensor, Tensor]:
    """Centreline point [B, N, 2] and unit tangent [B, N, 2] at fractional index `index + frac`."""
    B, L, P, _ = roadmap.path_xy.shape
    flat = roadmap.path_xy.reshape(B, L * P, 2)
    at = (path.clamp_min(0) * P + index).unsqueeze(-1).expand(-1, -1, 2)
    p0 = torch.gather(flat, 1, at)
    p1 = torch.gather(flat, 1, at + 1)  # the segment's end point
    seg = p1 - p0
    length = torch.sqrt(seg[..., 0] * seg[..., 0] + seg[..., 1] * seg[..., 1]).clamp_min(1e-9)
    return p0 + seg * frac.unsqueeze(-1), seg / length.unsqueeze(-1)


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
    xy, tangent = centre_at_index(roadmap, where.path, where.index, where.frac)
    yaw0 = _flat_rows(roadmap.path_yaw, where.path, where.index)
    yaw1 = _flat_rows(roadmap.path_yaw, where.path, where.index + 1)
    yaw = wrap_angle(yaw0 + where.frac * wrap_angle(yaw1 - yaw0))
    curvature = curvature_at(roadmap, where)
    length = torch.gather(roadmap.path_length, 1, where.path)
    # Past either end, extend straight so agents leaving a path keep moving smoothly.
    over = (where.s - length).clamp_min(0.0) + where.s.clamp_max(0.0)
    xy = xy + tangent * over.unsqueeze(-1)
    if d is not None:
        normal = torch.stack((-tangent[..., 1], tangent[..., 0]), dim=-1)
        xy = xy + normal * d.unsqueeze(-1)
    return Pose(xy=xy, yaw=yaw, curvature=curvature)


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
