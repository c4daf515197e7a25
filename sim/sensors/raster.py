"""Ego-frame rasters: where ego-frame points fall, the BEV returns, the map.

Continuous raster coordinates: cell (row r, column c) covers [r, r + 1) x
[c, c + 1); the sensor origin sits at (`ego_row_fraction` * H, W / 2). Row
grows backwards (row 0 is the far front), column grows to the ego's right.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from sim.config import RasterConfig
from sim.sensors.noise import Salt
from sim.sensors.pose import SensorPose
from sim.sensors.scan import Scan
from sim.state import RoadMap


def ego_origin_cell(raster: RasterConfig) -> tuple[float, float]:
    """Continuous (row, column) of the sensor origin."""
    return raster.ego_row_fraction * raster.size, 0.5 * raster.size


def ego_to_cell(x: Any, y: Any, raster: RasterConfig) -> tuple[Any, Any]:
    """Continuous raster (row, column) of ego-frame x and y, m (tensors or numbers, each of any shape)."""
    row0, col0 = ego_origin_cell(raster)
    return row0 - x / raster.resolution, col0 - y / raster.resolution


def cell_to_ego(row: Any, col: Any, raster: RasterConfig) -> tuple[Any, Any]:
    """Ego-frame (x, y), m, of continuous raster coordinates (a cell's centre is its index + 0.5)."""
    row0, col0 = ego_origin_cell(raster)
    return (row0 - row) * raster.resolution, (col0 - col) * raster.resolution


def grid_sample_coords(row: Any, col: Any, height: int, width: int) -> tuple[Any, Any]:
    """(column, row) of continuous raster coordinates normalised for `grid_sample` (align_corners=False):
    -1 and +1 are the raster's outer edges."""
    return 2.0 * col / width - 1.0, 2.0 * row / height - 1.0


def ego_xy_to_cell(xy: Tensor, raster: RasterConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Ego-frame points `[..., 2]` -> (row, column) long `[...]` and an inside-the-raster mask."""
    row, col = ego_to_cell(xy[..., 0], xy[..., 1], raster)
    row, col = torch.floor(row).long(), torch.floor(col).long()
    inside = (row >= 0) & (row < raster.size) & (col >= 0) & (col < raster.size)
    return row, col, inside


def cell_centres(raster: RasterConfig, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """Ego-frame x of each row's centres [H] and y of each column's centres [W], m."""
    centre = torch.arange(raster.size, dtype=dtype, device=device) + 0.5
    return cell_to_ego(centre, centre, raster)


def render_bev(scan: Scan, salt: Salt | None, raster: RasterConfig) -> Tensor:
    """[B, 2, H, W] float32: occupancy of the returns and their height (max per cell).

    Points that do not return write 0 into cell 0, which `amax` over a zeroed
    raster ignores; this keeps every tensor's shape static.
    """
    B, H = scan.points.shape[0], raster.size
    row, col, inside = ego_xy_to_cell(scan.points, raster)  # (B, M, P)
    hit = scan.returns & inside
    cell = torch.where(hit, row * H + col, torch.zeros_like(row)).reshape(B, -1)
    height = scan.objects.height.unsqueeze(-1).expand_as(hit)
    bev = torch.zeros(B, 2, H * H, dtype=torch.float32, device=cell.device)
    occupancy, heights = bev[:, 0], bev[:, 1]  # views: scatters write into `bev`
    occupancy.scatter_reduce_(1, cell, hit.reshape(B, -1).float(), "amax")
    heights.scatter_reduce_(1, cell, torch.where(hit, height, 0.0).reshape(B, -1).float(), "amax")
    if salt is not None:
        # Salt lights only empty cells: a real return keeps its own height.
        fire = salt.lit & (torch.gather(occupancy, 1, salt.cell) == 0.0)
        occupancy.scatter_reduce_(1, salt.cell, fire.float(), "amax")
        heights.scatter_reduce_(1, salt.cell, torch.where(fire, salt.height, 0.0).float(), "amax")
    return bev.reshape(B, 2, H, H)


def render_map(roadmap: RoadMap, pose: SensorPose, raster: RasterConfig) -> Tensor:
    """[B, 3, H, W] float32 in [0, 1]: the world-frame map raster at each ego cell's centre.

    Nearest-cell lookup through `grid_sample`, which reads zeros off the map.
    The sampling grid is an affine function of (row, column), built per
    episode in float64 and summed in float32 from a per-row and a per-column
    part, so every cell's lookup position is independent of the batch.
    """
    B, H = pose.center.shape[0], raster.size
    world = roadmap.raster  # (Bm, 3, Hm, Wm)
    Hm, Wm = world.shape[2], world.shape[3]
    table = world.float().mul_(1.0 / 255.0).expand(B, -1, -1, -1)
    ahead, left = cell_centres(raster, torch.float64, pose.center.device)  # (H,), (W,)
    # grid_sample's normalised coordinates: -1 and +1 are the outer edges of the map.
    cells = torch.tensor([Wm, Hm], dtype=torch.float64, device=pose.center.device)
    per_m = 2.0 / (roadmap.raster_resolution.to(torch.float64).unsqueeze(-1) * cells)  # (B, 2)
    start = (pose.center - roadmap.raster_origin.to(torch.float64)) * per_m - 1.0  # (B, 2)
    forward = torch.stack((pose.cos, pose.sin), dim=-1) * per_m  # (B, 2) per m ahead
    leftward = torch.stack((-pose.sin, pose.cos), dim=-1) * per_m  # (B, 2) per m left
    by_row = start.unsqueeze(1) + ahead.reshape(1, H, 1) * forward.unsqueeze(1)  # (B, H, 2)
    by_col = left.reshape(1, H, 1) * leftward.unsqueeze(1)  # (B, W, 2)
    grid = by_row.float().unsqueeze(2) + by_col.float().unsqueeze(1)  # (B, H, W, 2)
    return torch.nn.functional.grid_sample(table, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def read_map(channel: Tensor, xy: Tensor, raster: RasterConfig) -> Tensor:
    """Bilinear read of an ego-frame map channel `[B, 1, H, W]` at ego-frame points `xy [B, ..., 2]` -> [B, ...];
    1 beyond the raster (what the map does not cover counts as present: unmapped is not off-road).

    Smooth in the points (`grid_sample`), so costs built on it differentiate, and exportable.
    """
    row, col = ego_to_cell(xy[..., 0], xy[..., 1], raster)
    grid = torch.stack(grid_sample_coords(row, col, raster.size, raster.size), dim=-1)
    B = xy.shape[0]
    inside = (grid.abs() <= 1.0).all(-1)
    value = torch.nn.functional.grid_sample(channel, grid.reshape(B, 1, -1, 2), mode="bilinear",
                                            padding_mode="border", align_corners=False)  # fmt: skip
    value = value.reshape(xy.shape[:-1])
    return torch.where(inside, value, torch.ones_like(value))
