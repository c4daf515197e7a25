"""Batched planar geometry: frames, oriented boxes, and arc-length lookup on paths.

All functions broadcast over leading dimensions and contain no Python loops over
agents, so they run the same on a CPU in CI and on a GPU at scale.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sim.state import EgoState, RoadMap


def wrap_angle(angle: Tensor) -> Tensor:
    """Map angles to [-pi, pi)."""
    return torch.remainder(angle + math.pi, 2 * math.pi) - math.pi


def rotate(xy: Tensor, yaw: Tensor) -> Tensor:
    """Rotate vectors `xy [..., 2]` counter-clockwise by `yaw [...]`."""
    c, s = torch.cos(yaw), torch.sin(yaw)
    x, y = xy[..., 0], xy[..., 1]
    return torch.stack((c * x - s * y, s * x + c * y), dim=-1)


def world_to_local(xy: Tensor, origin: Tensor, yaw: Tensor) -> Tensor:
    """World points `xy [B, ..., 2]` into the frame at `origin [B, 2]` facing `yaw [B]`."""
    extra = xy.dim() - origin.dim()
    o = origin.reshape(origin.shape[:1] + (1,) * extra + origin.shape[1:])
    y = yaw.reshape(yaw.shape[:1] + (1,) * extra)
    return rotate(xy - o, -y)


def local_to_world(xy: Tensor, origin: Tensor, yaw: Tensor) -> Tensor:
    """Inverse of `world_to_local`."""
    extra = xy.dim() - origin.dim()
    o = origin.reshape(origin.shape[:1] + (1,) * extra + origin.shape[1:])
    y = yaw.reshape(yaw.shape[:1] + (1,) * extra)
    return rotate(xy, y) + o


def box_corners(xy: Tensor, yaw: Tensor, length: Tensor, width: Tensor) -> Tensor:
    """Corners `[..., 4, 2]` of boxes centred at `xy` (front-left, front-right, rear-right, rear-left)."""
    half = torch.stack((length, width), dim=-1) * 0.5  # (..., 2)
    signs = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [-1.0, 1.0]], dtype=xy.dtype, device=xy.device)
    local = half.unsqueeze(-2) * signs  # (..., 4, 2)
    return rotate(local, yaw.unsqueeze(-1)) + xy.unsqueeze(-2)


def _project(corners: Tensor, axes: Tensor) -> tuple[Tensor, Tensor]:
    """Min and max of `corners [..., 4, 2]` projected on `axes [..., K, 2]` -> [..., K]."""
    proj = torch.einsum("...kd,...cd->...kc", axes, corners)
    return proj.amin(-1), proj.amax(-1)


def boxes_overlap(a: Tensor, b: Tensor) -> Tensor:
    """Separating-axis test for convex quadrilaterals `a, b [..., 4, 2]` (broadcast) -> bool [...]."""
    a, b = torch.broadcast_tensors(a, b)

    def edge_normals(c: Tensor) -> Tensor:
        e = c[..., 1:3, :] - c[..., 0:2, :]  # two edge directions suffice for rectangles
        return torch.stack((-e[..., 1], e[..., 0]), dim=-1)

    axes = torch.cat((edge_normals(a), edge_normals(b)), dim=-2)  # (..., 4, 2)
    a_min, a_max = _project(a, axes)
    b_min, b_max = _project(b, axes)
    separated = (a_max < b_min) | (b_max < a_min)
    return ~separated.any(-1)


def obb_overlap(
    xy_a: Tensor,
    yaw_a: Tensor,
    length_a: Tensor,
    width_a: Tensor,
    xy_b: Tensor,
    yaw_b: Tensor,
    length_b: Tensor,
    width_b: Tensor,
) -> Tensor:
    """Whether oriented boxes overlap, from centres [..., 2], headings and sizes [...] (broadcast).

    The separating-axis test in centre/half-extent form: on each of the four box
    axes, the centres' separation is compared with the sum of the projected half
    extents. Far cheaper than corner projections on large pair grids.
    """
    d = xy_b - xy_a
    ca, sa, cb, sb = torch.cos(yaw_a), torch.sin(yaw_a), torch.cos(yaw_b), torch.sin(yaw_b)
    hla, hwa, hlb, hwb = 0.5 * length_a, 0.5 * width_a, 0.5 * length_b, 0.5 * width_b
    cos_ab = (ca * cb + sa * sb).abs()  # |u_a . u_b| = |v_a . v_b|
    sin_ab = (sa * cb - ca * sb).abs()  # |u_a . v_b| = |v_a . u_b|
    dx, dy = d[..., 0], d[..., 1]
    apart = (dx * ca + dy * sa).abs() > hla + hlb * cos_ab + hwb * sin_ab  # axis u_a
    apart = apart | ((-dx * sa + dy * ca).abs() > hwa + hlb * sin_ab + hwb * cos_ab)  # axis v_a
    apart = apart | ((dx * cb + dy * sb).abs() > hlb + hla * cos_ab + hwa * sin_ab)  # axis u_b
    apart = apart | ((-dx * sb + dy * cb).abs() > hwb + hla * sin_ab + hwa * cos_ab)  # axis v_b
    return ~apart


def _gather_paths(field: Tensor, path: Tensor) -> Tensor:
    """Rows of `field [B, L, P, ...]` for `path [B, N]` -> [B, N, P, ...]."""
    B, N = path.shape
    idx = path.clamp_min(0).reshape(B, N, *([1] * (field.dim() - 2)))
    idx = idx.expand(B, N, *field.shape[2:])
    return torch.gather(field, 1, idx)


def _segment_at(path_s: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """Segment index i (point i to i+1) containing `s`, and the fraction along it."""
    P = path_s.shape[-1]
    # The count of knots at or before s is `searchsorted(right=True)` on the sorted knots, written
    # as a comparison so that the planner's graphs export (ONNX has no searchsorted).
    i = ((path_s <= s.unsqueeze(-1)).sum(-1) - 1).clamp(0, P - 2)
    # `select`, not `squeeze`, here and in `interpolate_polyline`: an exported squeeze becomes an If.
    s0 = torch.gather(path_s, -1, i.unsqueeze(-1)).select(-1, 0)
    s1 = torch.gather(path_s, -1, (i + 1).unsqueeze(-1)).select(-1, 0)
    frac = ((s - s0) / (s1 - s0).clamp_min(1e-6)).clamp(0.0, 1.0)
    return i, frac


def path_pose(roadmap: RoadMap, path: Tensor, s: Tensor, d: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """World pose at arc length `s [B, N]` (clamped to the path) and lateral offset `d` on `path [B, N]`.

    Returns (xy [B, N, 2], yaw [B, N], curvature [B, N]).
    """
    path_s = _gather_paths(roadmap.path_s, path)  # (B, N, P)
    i, frac = _segment_at(path_s, s)
    pts = _gather_paths(roadmap.path_xy, path)  # (B, N, P, 2)
    p0 = torch.gather(pts, 2, i[..., None, None].expand(*i.shape, 1, 2)).squeeze(2)
    p1 = torch.gather(pts, 2, (i + 1)[..., None, None].expand(*i.shape, 1, 2)).squeeze(2)
    xy = p0 + (p1 - p0) * frac.unsqueeze(-1)
    seg = p1 - p0
    yaw = torch.atan2(seg[..., 1], seg[..., 0])
    curv = torch.gather(_gather_paths(roadmap.path_curvature, path), 2, i.unsqueeze(-1)).squeeze(-1)
    # Past either end, extrapolate straight so agents leaving a path keep moving smoothly.
    length = torch.gather(roadmap.path_length, 1, path.clamp_min(0))
    over = (s - length).clamp_min(0.0) + s.clamp_max(0.0)
    heading = torch.stack((torch.cos(yaw), torch.sin(yaw)), dim=-1)
    xy = xy + heading * over.unsqueeze(-1)
    if d is not None:
        xy = xy + torch.stack((-torch.sin(yaw), torch.cos(yaw)), dim=-1) * d.unsqueeze(-1)
    return xy, yaw, curv


def project_to_polyline(pts: Tensor, path_s: Tensor, xy: Tensor) -> tuple[Tensor, Tensor]:
    """Arc length and signed lateral offset (left > 0) of `xy [..., 2]` on polylines
    `pts [..., P, 2]` with cumulative arc length `path_s [..., P]` (exact projection
    onto the nearest segment)."""
    a, b = pts[..., :-1, :], pts[..., 1:, :]
    ab = b - a
    seg_len2 = (ab * ab).sum(-1).clamp_min(1e-9)
    t = (((xy.unsqueeze(-2) - a) * ab).sum(-1) / seg_len2).clamp(0.0, 1.0)  # (..., P-1)
    foot = a + ab * t.unsqueeze(-1)
    dist2 = ((xy.unsqueeze(-2) - foot) ** 2).sum(-1)
    j = dist2.argmin(-1, keepdim=True)
    # `select`, not `squeeze`: an exported squeeze under a dynamic batch becomes an ONNX If.
    t_j = torch.gather(t, -1, j).select(-1, 0)
    s0 = torch.gather(path_s[..., :-1], -1, j).select(-1, 0)
    s1 = torch.gather(path_s[..., 1:], -1, j).select(-1, 0)
    s = s0 + (s1 - s0) * t_j
    ab_j = torch.gather(ab, -2, j.unsqueeze(-1).expand(*j.shape, 2)).select(-2, 0)
    a_j = torch.gather(a, -2, j.unsqueeze(-1).expand(*j.shape, 2)).select(-2, 0)
    rel = xy - a_j
    cross = ab_j[..., 0] * rel[..., 1] - ab_j[..., 1] * rel[..., 0]
    d = cross / ab_j.norm(dim=-1).clamp_min(1e-6)
    return s, d


def interpolate_polyline(pts: Tensor, path_s: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """Point `[..., 2]` and tangent heading `[...]` at arc length `s [...]` on polylines
    `pts [..., P, 2]`; beyond either end the last segment is extended straight."""
    i, frac = _segment_at(path_s, s)
    p0 = torch.gather(pts, -2, i[..., None, None].expand(*i.shape, 1, 2)).select(-2, 0)
    p1 = torch.gather(pts, -2, (i + 1)[..., None, None].expand(*i.shape, 1, 2)).select(-2, 0)
    seg = p1 - p0
    yaw = torch.atan2(seg[..., 1], seg[..., 0])
    s_lo = path_s[..., 0]
    s_hi = path_s[..., -1]
    over = (s - s_hi).clamp_min(0.0) + (s - s_lo).clamp_max(0.0)
    heading = torch.stack((torch.cos(yaw), torch.sin(yaw)), dim=-1)
    return p0 + seg * frac.unsqueeze(-1) + heading * over.unsqueeze(-1), yaw


def project_to_path(roadmap: RoadMap, path: Tensor, xy: Tensor) -> tuple[Tensor, Tensor]:
    """Arc length and signed lateral offset of points `xy [B, N, 2]` on `path [B, N]`."""
    pts = _gather_paths(roadmap.path_xy, path)  # (B, N, P, 2)
    path_s = _gather_paths(roadmap.path_s, path)  # (B, N, P)
    return project_to_polyline(pts, path_s, xy)


def sample_raster(raster: Tensor, origin: Tensor, resolution: Tensor, xy: Tensor, channel: int) -> Tensor:
    """Nearest-cell lookup of `raster [B|1, C, H, W]` (uint8) at world points `xy [B, ..., 2]`.

    Returns float values in [0, 1]; points off the raster read 0.
    """
    B = xy.shape[0]
    H, W = raster.shape[-2:]
    extra = xy.dim() - 2
    o = origin.reshape(B, *([1] * extra), 2)
    res = resolution.reshape(B, *([1] * extra))
    col = torch.floor((xy[..., 0] - o[..., 0]) / res).long()
    row = torch.floor((xy[..., 1] - o[..., 1]) / res).long()
    inside = (col >= 0) & (col < W) & (row >= 0) & (row < H)
    flat = raster[:, channel].reshape(raster.shape[0], H * W)
    idx = (row.clamp(0, H - 1) * W + col.clamp(0, W - 1)).reshape(B, -1)
    values = flat[0][idx] if flat.shape[0] == 1 else torch.gather(flat, 1, idx)
    values = values.reshape(row.shape).float() / 255.0
    return torch.where(inside, values, torch.zeros_like(values))


def ego_center(ego: EgoState) -> Tensor:
    """Centre of the ego's box [B, 2], world frame.

    Convention: `EgoState.xy` is the rear axle and the overhangs are equal, so
    the box centre lies `wheelbase / 2` ahead of the rear axle along the heading.
    """
    heading = torch.stack((torch.cos(ego.yaw), torch.sin(ego.yaw)), dim=-1)
    return ego.xy + heading * (0.5 * ego.wheelbase).unsqueeze(-1)


def ego_corners(ego: EgoState) -> Tensor:
    """Corners [B, 4, 2] of the ego's box, world frame."""
    return box_corners(ego_center(ego), ego.yaw, ego.length, ego.width)


def plan_heading(xy: Tensor) -> Tensor:
    """Heading [..., S] along planned positions `xy [..., S, 2]` of a path that starts
    at the origin facing +x (an ego-frame plan). Where the plan stands still, the
    last heading carries on (0 before the first move)."""
    start = torch.zeros_like(xy[..., :1, :])
    steps = torch.diff(torch.cat((start, xy), dim=-2), dim=-2)
    moving = steps.norm(dim=-1) > 1e-3
    yaw = torch.where(moving, torch.atan2(steps[..., 1], steps[..., 0]), torch.zeros_like(steps[..., 0]))
    idx = torch.arange(yaw.shape[-1], device=yaw.device).expand_as(yaw)
    last_move = torch.cummax(torch.where(moving, idx, torch.zeros_like(idx)), dim=-1).values
    return torch.gather(yaw, -1, last_move)
