"""A lidar-like scan: perimeter points of every box, occluded by ray casting.

Each box is sampled at PERIMETER_POINTS points evenly spaced along its outline
(a fixed count, so shapes stay static). Bearings from the sensor origin are
binned into `RasterConfig.angular_bins` bins. Every outline segment between
consecutive points writes its nearer range into all the bins it spans, so a
near box shadows the bins between its sample points too (with points alone, a
box close to the sensor would leave gaps that far objects leak through). A
point is visible when its range is within DEPTH_TOLERANCE of its bin's nearest
range and within the sensor's range; the far side of a box is hidden by its
own near side the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sim.config import RasterConfig
from sim.sensors.scene import EgoObjects

PERIMETER_POINTS = 48
# A return this much behind the nearest one in its bin still counts as seen:
# it absorbs the spread of ranges within one bin along a surface.
DEPTH_TOLERANCE = 0.3
# A box counts as visible when at least this fraction of its outline is seen.
VISIBLE_FRACTION = 0.1


def perimeter_points(objects: EgoObjects, points: int = PERIMETER_POINTS) -> Tensor:
    """[B, M, P, 2] points evenly spaced by arc length along each box outline, ego frame.

    The walk starts at the front-left corner and goes clockwise: front edge,
    right side, rear edge, left side.
    """
    L = objects.length.unsqueeze(-1)  # (B, M, 1)
    W = objects.width.unsqueeze(-1)
    frac = (torch.arange(points, dtype=L.dtype, device=L.device) + 0.5) / points  # (P,)
    s = frac * 2.0 * (L + W)  # (B, M, P) arc length from the front-left corner
    x = 0.5 * L - (s - W).clamp(min=0.0).minimum(L) + (s - 2.0 * W - L).clamp(min=0.0).minimum(L)
    y = 0.5 * W - s.minimum(W) + (s - W - L).clamp(min=0.0).minimum(W)
    c = torch.cos(objects.yaw).unsqueeze(-1)
    sn = torch.sin(objects.yaw).unsqueeze(-1)
    centre = objects.xy.unsqueeze(-2)  # (B, M, 1, 2)
    return torch.stack((c * x - sn * y, sn * x + c * y), dim=-1) + centre


def bearing_bins(points: Tensor, bins: int) -> Tensor:
    """[...] long bin in [0, bins) of each point's bearing (bin 0 starts at -pi)."""
    bearing = torch.atan2(points[..., 1], points[..., 0])
    index = torch.floor((bearing + math.pi) * (bins / (2.0 * math.pi))).long()
    return torch.remainder(index, bins)


def nearest_range(ranges: Tensor, bins_of: Tensor, present: Tensor, bins: int) -> Tensor:
    """[B, bins] nearest range of any present outline crossing each bin (inf where none).

    `ranges`, `bins_of`: [B, M, P] per outline point; point p and p + 1 (cyclic)
    bound one segment, which covers every bin between theirs.
    """
    B = ranges.shape[0]
    next_bin = bins_of.roll(-1, dims=-1)
    # Signed bins from each point to the next, the short way round.
    step = torch.remainder(next_bin - bins_of + bins // 2, bins) - bins // 2  # (B, M, P)
    seg_range = torch.minimum(ranges, ranges.roll(-1, dims=-1))
    counts = torch.where(present.unsqueeze(-1), step.abs() + 1, torch.zeros_like(step)).flatten()
    batch = torch.arange(B, device=ranges.device).reshape(B, 1, 1).expand_as(bins_of).flatten()
    # One entry per (segment, bin covered): T entries in all.
    seg = torch.repeat_interleave(torch.arange(counts.numel(), device=ranges.device), counts)
    first = torch.cumsum(counts, 0) - counts
    offset = torch.arange(seg.numel(), device=ranges.device) - first[seg]  # (T,) 0..|step|
    covered = torch.remainder(bins_of.flatten()[seg] + offset * step.sign().flatten()[seg], bins)
    depth = torch.full((B * bins,), math.inf, dtype=ranges.dtype, device=ranges.device)
    depth.scatter_reduce_(0, batch[seg] * bins + covered, seg_range.flatten()[seg], "amin")
    return depth.reshape(B, bins)


@dataclass(frozen=True)
class Scan:
    """The outline points of M boxes and which of them the sensor sees.

    Attributes:
        objects: the scanned boxes, ego frame.
        points: [B, M, P, 2] float64 outline points, ego frame, m.
        seen: [B, M, P] bool, present, in range and not occluded (misses aside).
        seen_fraction: [B, M] float64, fraction of the outline seen.
        distance: [B, M] float64, range of the box centre, m.
    """

    objects: EgoObjects
    points: Tensor
    seen: Tensor
    seen_fraction: Tensor
    distance: Tensor

    @property
    def visible(self) -> Tensor:
        """[B, M] bool, enough of the outline seen to count the box as visible."""
        return self.objects.present & (self.seen_fraction >= VISIBLE_FRACTION)

    @property
    def returns(self) -> Tensor:
        """[B, M, P] bool, points that come back as returns (seen and not missed)."""
        return self.seen & self.objects.drawn.unsqueeze(-1)


def scan(objects: EgoObjects, sensor_range: Tensor, raster: RasterConfig) -> Scan:
    """Ray-cast the outlines of `objects` from the ego-frame origin.

    `sensor_range`: [B] float, m.
    """
    points = perimeter_points(objects)  # (B, M, P, 2)
    x, y = points[..., 0], points[..., 1]
    ranges = torch.sqrt(x * x + y * y)  # (B, M, P)
    bins_of = bearing_bins(points, raster.angular_bins)  # (B, M, P)
    depth = nearest_range(ranges, bins_of, objects.present, raster.angular_bins)  # (B, bins)
    B = ranges.shape[0]
    first_hit = torch.gather(depth, 1, bins_of.reshape(B, -1)).reshape(ranges.shape)
    in_range = ranges <= sensor_range.to(ranges.dtype).reshape(B, 1, 1)
    seen = (ranges <= first_hit + DEPTH_TOLERANCE) & in_range & objects.present.unsqueeze(-1)
    return Scan(
        objects=objects,
        points=points,
        seen=seen,
        seen_fraction=seen.sum(-1).to(ranges.dtype) / points.shape[-2],
        distance=torch.hypot(objects.xy[..., 0], objects.xy[..., 1]),
    )
