"""Stack per-episode road layouts into one batched `RoadMap`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sim.roads import polyline as pl
from sim.roads import raster
from sim.roads.layouts import RoadGeometry
from sim.state import RoadMap

RESOLUTION = 0.5  # m per map-raster cell


def stack_roads(
    geoms: Sequence[RoadGeometry],
    episode_geom: Sequence[int],
    *,
    paths: int,
    points: int,
    crosswalks: int,
    resolution: float = RESOLUTION,
) -> RoadMap:
    """The `RoadMap` of B episodes; episode b uses layout `geoms[episode_geom[b]]`.

    Layouts are converted and rendered once each, so a batch whose episodes share
    one layout costs one render and carries a raster with leading dim 1.
    `paths`, `points` and `crosswalks` are the padded capacities L, P and C.
    """
    for u, geom in enumerate(geoms):
        if len(geom.paths) > paths or len(geom.crosswalks) > crosswalks:
            raise ValueError(
                f"stack_roads: layout {u} has {len(geom.paths)} paths and "
                f"{len(geom.crosswalks)} crosswalks, capacity is {paths} and {crosswalks}"
            )
        if any(lane.xy.shape != (points, 2) for lane in geom.paths):
            raise ValueError(f"stack_roads: layout {u} has paths without {points} points")
    unique = _unique_tensors(geoms, paths, points, crosswalks)
    pick = torch.as_tensor(list(episode_geom), dtype=torch.long)
    fields = {name: value[pick] for name, value in unique.items()}
    grids = [raster.extent(g, resolution) for g in geoms]
    if len(geoms) == 1:
        origin, h, w = grids[0]
        image = torch.from_numpy(raster.render(geoms[0], origin, h, w, resolution))[None]  # (1, 3, H, W)
    else:
        h_max, w_max = max(g[1] for g in grids), max(g[2] for g in grids)
        images = np.zeros((len(geoms), 3, h_max, w_max), np.uint8)
        for u, (geom, (origin, h, w)) in enumerate(zip(geoms, grids, strict=True)):
            images[u, :, :h, :w] = raster.render(geom, origin, h, w, resolution)
        image = torch.from_numpy(images)[pick]  # (B, 3, H, W)
    origins = torch.as_tensor(np.stack([g[0] for g in grids]), dtype=torch.float32)[pick]
    return RoadMap(
        **fields,
        raster=image,
        raster_origin=origins,
        raster_resolution=torch.full((len(pick),), resolution, dtype=torch.float32),
    )


def _unique_tensors(geoms: Sequence[RoadGeometry], L: int, P: int, C: int) -> dict[str, torch.Tensor]:
    """Path and crosswalk fields `[U, ...]` of the unique layouts, padded to capacity."""
    U = len(geoms)
    xy = np.zeros((U, L, P, 2))
    yaw = np.zeros((U, L, P))
    curv = np.zeros((U, L, P))
    s = np.tile(np.linspace(0.0, 1.0, P), (U, L, 1))  # padding stays increasing for searchsorted
    length, width, limit = np.ones((U, L)), np.full((U, L), 3.5), np.full((U, L), 13.9)
    left, right = np.full((U, L), -1), np.full((U, L), -1)
    valid = np.zeros((U, L), bool)
    cw = np.zeros((U, C, 4, 2))
    cw_valid = np.zeros((U, C), bool)
    for u, geom in enumerate(geoms):
        for i, lane in enumerate(geom.paths):
            xy[u, i] = lane.xy
            yaw[u, i] = pl.headings(lane.xy)
            curv[u, i] = pl.curvatures(lane.xy)
            s[u, i] = pl.arc_lengths(lane.xy)
            length[u, i], width[u, i], limit[u, i] = s[u, i, -1], lane.width, lane.speed_limit
            left[u, i], right[u, i], valid[u, i] = lane.left, lane.right, True
        for c, corners in enumerate(geom.crosswalks):
            cw[u, c], cw_valid[u, c] = corners, True
    f32 = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    i64 = lambda a: torch.as_tensor(a, dtype=torch.long)  # noqa: E731
    return {
        "path_xy": f32(xy),
        "path_yaw": f32(yaw),
        "path_s": f32(s),
        "path_curvature": f32(curv),
        "path_length": f32(length),
        "path_width": f32(width),
        "path_speed_limit": f32(limit),
        "path_left": i64(left),
        "path_right": i64(right),
        "path_valid": torch.as_tensor(valid),
        "crosswalk": f32(cw),
        "crosswalk_valid": torch.as_tensor(cw_valid),
    }
