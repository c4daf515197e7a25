"""Road geometry: per-episode layouts (numpy), their raster, and batching into a `RoadMap`.

geom = straight_road(lanes=3, oncoming_lanes=1, lane_width=3.5, length=300.0,
                     speed_limit=16.7, points=96)
roadmap = stack_roads([geom], [0] * B, paths=4, points=96, crosswalks=1)
"""

from __future__ import annotations

from sim.roads.batch import RESOLUTION, stack_roads
from sim.roads.layouts import (
    APPROACHES,
    Lane,
    RoadGeometry,
    curved_road,
    intersection,
    merge_road,
    straight_road,
)

LAYOUTS = {
    "straight": straight_road,
    "curved": curved_road,
    "intersection": intersection,
    "merge": merge_road,
}


def build_road(kind: str, points: int, **params: object) -> RoadGeometry:
    """The layout `kind` ("straight", "curved", "intersection", "merge") with `points` per path."""
    if kind not in LAYOUTS:
        raise ValueError(f"unknown road type {kind!r}; expected one of {sorted(LAYOUTS)}")
    return LAYOUTS[kind](points=points, **params)


def path_count(kind: str, lanes: int, oncoming_lanes: int = 0) -> int:
    """Number of paths of a layout with `lanes` (per direction at an intersection)."""
    if kind == "intersection":
        return len(APPROACHES) * (lanes + 2)
    if kind == "merge":
        return lanes + 1
    return lanes + oncoming_lanes


def crosswalk_count(kind: str, has_crosswalk: bool) -> int:
    if kind == "intersection":
        return len(APPROACHES)
    return int(has_crosswalk)


__all__ = [
    "APPROACHES",
    "LAYOUTS",
    "Lane",
    "RESOLUTION",
    "RoadGeometry",
    "build_road",
    "crosswalk_count",
    "curved_road",
    "intersection",
    "merge_road",
    "path_count",
    "stack_roads",
    "straight_road",
]
