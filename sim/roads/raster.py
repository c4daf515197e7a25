"""World-frame map raster of one road layout, drawn with OpenCV.

Channels (drivable area, lane centrelines, crosswalks), uint8, 255 = present.
Cell (row r, col c) covers the square whose lower-left corner is
`origin + (c, r) * resolution`, so rows grow with y (north).
"""

from __future__ import annotations

import cv2
import numpy as np

from sim.roads import polyline as pl
from sim.roads.layouts import RoadGeometry

MARGIN = 10.0  # m of empty map kept around the road
_SHIFT = 3  # cv2 fixed-point bits: coordinates are drawn with 1/8-cell precision


def extent(geom: RoadGeometry, resolution: float) -> tuple[np.ndarray, int, int]:
    """Origin `(2,)` and (H, W) of a raster covering every path, strip and polygon."""
    pts = [lane.xy for lane in geom.paths]
    pts += [*geom.crosswalks, *geom.areas]
    pts += [pl.strip_polygon(xy, width) for xy, width in geom.strips]
    pts += [pl.strip_polygon(lane.xy, lane.width) for lane in geom.paths]
    allpts = np.concatenate(pts, axis=0)
    lo = np.floor((allpts.min(axis=0) - MARGIN) / resolution) * resolution
    hi = allpts.max(axis=0) + MARGIN
    width, height = np.ceil((hi - lo) / resolution).astype(int)
    return lo, int(height), int(width)


def render(geom: RoadGeometry, origin: np.ndarray, height: int, width: int, resolution: float) -> np.ndarray:
    """The raster `(3, H, W)` uint8 of `geom` on the given grid."""

    def cells(xy: np.ndarray) -> np.ndarray:
        # cv2 puts pixel c's centre at integer c, i.e. at world origin + (c + 0.5) * resolution.
        uv = (xy - origin) / resolution - 0.5
        return np.round(uv * (1 << _SHIFT)).astype(np.int32)

    drivable = np.zeros((height, width), np.uint8)
    lanes = np.zeros_like(drivable)
    crossings = np.zeros_like(drivable)
    polygons = [pl.strip_polygon(lane.xy, lane.width) for lane in geom.paths]
    polygons += [pl.strip_polygon(xy, w) for xy, w in geom.strips]
    polygons += list(geom.areas)
    for polygon in polygons:
        # One fillPoly call per polygon: OpenCV's even-odd fill would cut holes where
        # polygons passed together overlap.
        cv2.fillPoly(drivable, [cells(polygon)], 255, lineType=cv2.LINE_8, shift=_SHIFT)
    centrelines = [cells(lane.xy) for lane in geom.paths]
    cv2.polylines(lanes, centrelines, False, 255, thickness=1, lineType=cv2.LINE_8, shift=_SHIFT)
    for polygon in geom.crosswalks:
        cv2.fillPoly(crossings, [cells(polygon)], 255, lineType=cv2.LINE_8, shift=_SHIFT)
    return np.stack((drivable, lanes, crossings))
