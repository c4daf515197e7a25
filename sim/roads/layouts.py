"""Road layouts: one episode's lanes, crosswalks and drivable area (numpy, build time).

Every layout starts the ego's direction of travel along +x (east). Lanes are
numbered from the right: lane 0 is next to the kerb. Paths are listed in a
fixed order per layout (documented on each builder and in docs/scenarios.md)
and also by name in `RoadGeometry.routes`, e.g. "lane/1", "oncoming/0",
"ramp", "west/left".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sim.roads import polyline as pl

APPROACHES = ("west", "south", "east", "north")  # approach of origin, counter-clockwise


@dataclass(frozen=True)
class Lane:
    """One path: `xy (P, 2)` at equal arc length, its width, speed limit and neighbours."""

    xy: np.ndarray
    width: float
    speed_limit: float
    left: int = -1
    right: int = -1


@dataclass(frozen=True)
class RoadGeometry:
    """One episode's map before batching.

    Attributes:
        paths: every drivable path, in the layout's documented order.
        routes: path name -> index into `paths`.
        crosswalks: `(4, 2)` corner arrays, m, world frame.
        strips: extra drivable strips (centreline `(K, 2)`, width), e.g. a kerbside shoulder.
        areas: extra drivable polygons `(K, 2)`, e.g. the intersection box.
    """

    paths: tuple[Lane, ...]
    routes: dict[str, int]
    crosswalks: tuple[np.ndarray, ...] = ()
    strips: tuple[tuple[np.ndarray, float], ...] = ()
    areas: tuple[np.ndarray, ...] = ()

    def route(self, name: str) -> int:
        if name not in self.routes:
            raise KeyError(f"road has no path {name!r}; it has {sorted(self.routes)}")
        return self.routes[name]


def _parallel_lanes(
    centreline: Callable[[np.ndarray, float], np.ndarray],
    lanes: int,
    oncoming_lanes: int,
    lane_width: float,
    speed_limit: float,
    points: int,
) -> tuple[list[Lane], dict[str, int]]:
    """Lanes 0..n-1 in the ego's direction, then oncoming 0..m-1 (0 next to the centre line).

    `centreline(frac, d)` gives the points at fractions `frac` of the reference
    length, shifted `d` to the left of lane 0. Every lane samples the same
    fractions, so point i of each lane lies on one cross-section.
    """
    frac = np.linspace(0.0, 1.0, points)
    paths, routes = [], {}
    for k in range(lanes):
        left = k + 1 if k + 1 < lanes else -1
        paths.append(Lane(centreline(frac, k * lane_width), lane_width, speed_limit, left, k - 1))
        routes[f"lane/{k}"] = k
    for j in range(oncoming_lanes):
        # Reversed: heading west, its left is the centre line (no lane change into opposing traffic).
        xy = centreline(frac, (lanes + j) * lane_width)[::-1].copy()
        left = lanes + j - 1 if j > 0 else -1
        right = lanes + j + 1 if j + 1 < oncoming_lanes else -1
        paths.append(Lane(xy, lane_width, speed_limit, left, right))
        routes[f"oncoming/{j}"] = lanes + j
    return paths, routes


def _cross_section_extras(
    centreline: Callable[[np.ndarray, float], np.ndarray],
    length: float,
    lane_width: float,
    total_lanes: int,
    shoulder_width: float,
    crosswalk_s: float | None,
    crosswalk_width: float,
) -> tuple[tuple[np.ndarray, ...], tuple[tuple[np.ndarray, float], ...]]:
    strips = ()
    if shoulder_width > 0:
        dense = centreline(np.linspace(0.0, 1.0, max(2, int(length / pl.DENSE_SPACING))), 0.0)
        strips = ((pl.offset(dense, -(lane_width + shoulder_width) / 2), shoulder_width),)
    crosswalks = ()
    if crosswalk_s is not None:
        near, far = (crosswalk_s - crosswalk_width / 2) / length, (crosswalk_s + crosswalk_width / 2) / length
        right_edge, left_edge = -lane_width / 2 - shoulder_width, (total_lanes - 0.5) * lane_width
        frac = np.array([near, far])
        corners = np.concatenate((centreline(frac, right_edge), centreline(frac[::-1], left_edge)))
        crosswalks = (corners,)
    return crosswalks, strips


def straight_road(
    *,
    lanes: int,
    oncoming_lanes: int,
    lane_width: float,
    length: float,
    speed_limit: float,
    points: int,
    shoulder_width: float = 0.0,
    crosswalk_s: float | None = None,
    crosswalk_width: float = 4.0,
) -> RoadGeometry:
    """Lane k's centre runs from (0, k * lane_width) to (length, k * lane_width).

    Paths: lanes 0..n-1 (east), then oncoming 0..m-1 (west). A shoulder lies
    right of lane 0; a crosswalk, when `crosswalk_s` is set, spans the whole
    road at that arc length.
    """

    def centreline(frac: np.ndarray, d: float) -> np.ndarray:
        return np.stack((frac * length, np.full_like(frac, d)), axis=1)

    paths, routes = _parallel_lanes(centreline, lanes, oncoming_lanes, lane_width, speed_limit, points)
    crosswalks, strips = _cross_section_extras(
        centreline, length, lane_width, lanes + oncoming_lanes, shoulder_width, crosswalk_s, crosswalk_width
    )
    return RoadGeometry(tuple(paths), routes, crosswalks, strips)


def curved_road(
    *,
    lanes: int,
    oncoming_lanes: int,
    lane_width: float,
    length: float,
    speed_limit: float,
    radius: float,
    direction: str,
    points: int,
    shoulder_width: float = 0.0,
    crosswalk_s: float | None = None,
    crosswalk_width: float = 4.0,
) -> RoadGeometry:
    """A constant-radius arc: lane 0 has `radius` and `length`; the other lanes are concentric.

    Starts at the origin heading east and turns `direction` ("left" or "right").
    Paths are ordered as on `straight_road`.
    """
    if direction not in ("left", "right"):
        raise ValueError(f"curved_road: direction must be 'left' or 'right', got {direction!r}")
    outer = (lanes + oncoming_lanes) * lane_width + shoulder_width
    if radius <= outer:
        raise ValueError(f"curved_road: radius {radius} m must exceed the road width {outer} m")
    sweep = length / radius
    sign = 1.0 if direction == "left" else -1.0

    def centreline(frac: np.ndarray, d: float) -> np.ndarray:
        # Left turn: centre (0, R), lane radius R - d; right turn mirrored in y.
        theta = -sign * math.pi / 2 + sign * frac * sweep
        r = radius - sign * d
        return np.stack((r * np.cos(theta), sign * radius + r * np.sin(theta)), axis=1)

    paths, routes = _parallel_lanes(centreline, lanes, oncoming_lanes, lane_width, speed_limit, points)
    crosswalks, strips = _cross_section_extras(
        centreline, length, lane_width, lanes + oncoming_lanes, shoulder_width, crosswalk_s, crosswalk_width
    )
    return RoadGeometry(tuple(paths), routes, crosswalks, strips)


def intersection(
    *,
    lanes: int,
    lane_width: float,
    arm_length: float,
    speed_limit: float,
    turn_speed_limit: float,
    corner_radius: float,
    crosswalk_width: float,
    crosswalk_gap: float,
    points: int,
) -> RoadGeometry:
    """A four-way intersection centred on the origin; every arm has `lanes` lanes each way.

    The box is the square |x|, |y| <= h with h = lanes * lane_width + corner_radius.
    Each crosswalk spans its arm `crosswalk_gap` m outside the box. Paths, for
    each approach in (west, south, east, north): straight-through from lanes
    0..n-1 ("west/straight/k"), then the left turn from the leftmost lane
    ("west/left") and the right turn from lane 0 ("west/right"). Each is one
    polyline: `arm_length` m of incoming lane, the connector, `arm_length` m
    of outgoing lane.
    """
    h = lanes * lane_width + corner_radius
    template = _west_approach(lanes, lane_width, arm_length, h, speed_limit, turn_speed_limit, points)
    paths, routes = [], {}
    per = len(template)
    for a, name in enumerate(APPROACHES):
        angle = a * math.pi / 2
        base = a * per
        for i, (suffix, lane) in enumerate(template):
            left = lane.left + base if lane.left >= 0 else -1
            right = lane.right + base if lane.right >= 0 else -1
            paths.append(Lane(pl.rotate(lane.xy, angle), lane.width, lane.speed_limit, left, right))
            routes[f"{name}/{suffix}"] = base + i
    half_road = lanes * lane_width
    near, far = h + crosswalk_gap, h + crosswalk_gap + crosswalk_width
    west_crosswalk = np.array([[-far, -half_road], [-near, -half_road], [-near, half_road], [-far, half_road]])
    crosswalks = tuple(pl.rotate(west_crosswalk, a * math.pi / 2) for a in range(4))
    box = np.array([[-h, -h], [h, -h], [h, h], [-h, h]], dtype=float)
    return RoadGeometry(tuple(paths), routes, crosswalks, areas=(box,))


def _west_approach(
    lanes: int, w: float, arm: float, h: float, speed_limit: float, turn_speed_limit: float, points: int
) -> list[tuple[str, Lane]]:
    """Paths entering from the west arm (heading east), before rotation to other arms."""
    out = []
    for k in range(lanes):
        y = -(lanes - k - 0.5) * w
        left = k + 1 if k + 1 < lanes else -1
        xy = pl.line((-h - arm, y), (h + arm, y), points)
        out.append((f"straight/{k}", Lane(xy, w, speed_limit, left, k - 1)))
    inner, outer = 0.5 * w, (lanes - 0.5) * w  # |y| of the leftmost and rightmost lanes
    # Left: leftmost lane -> the innermost northbound lane (x = +inner), arc about (-h, h).
    left_turn = pl.join(
        pl.dense_line((-h - arm, -inner), (-h, -inner)),
        pl.dense_arc((-h, h), h + inner, -math.pi / 2, 0.0),
        pl.dense_line((inner, h), (inner, h + arm)),
    )
    # Right: lane 0 -> the outermost southbound lane (x = -outer), arc about (-h, -h).
    right_turn = pl.join(
        pl.dense_line((-h - arm, -outer), (-h, -outer)),
        pl.dense_arc((-h, -h), h - outer, math.pi / 2, 0.0),
        pl.dense_line((-outer, -h), (-outer, -h - arm)),
    )
    out.append(("left", Lane(pl.resample(left_turn, points), w, turn_speed_limit)))
    out.append(("right", Lane(pl.resample(right_turn, points), w, turn_speed_limit)))
    return out


def merge_road(
    *,
    lanes: int,
    lane_width: float,
    length: float,
    speed_limit: float,
    merge_s: float,
    ramp_length: float,
    ramp_offset: float,
    ramp_speed_limit: float,
    points: int,
) -> RoadGeometry:
    """A straight main road (lanes as on `straight_road`, no oncoming) and an on-ramp.

    The ramp starts `ramp_offset` m right of lane 0 at x = merge_s - ramp_length,
    tapers (a half cosine, level at both ends) onto lane 0 at x = merge_s, then
    runs along lane 0 to the end: after the merge the ramp path coincides with
    lane 0. Paths: lanes 0..n-1, then "ramp".
    """
    x0 = merge_s - ramp_length
    if x0 < 0 or merge_s >= length:
        raise ValueError(
            f"merge_road: need 0 <= merge_s - ramp_length and merge_s < length, got "
            f"merge_s={merge_s}, ramp_length={ramp_length}, length={length}"
        )

    def centreline(frac: np.ndarray, d: float) -> np.ndarray:
        return np.stack((frac * length, np.full_like(frac, d)), axis=1)

    paths, routes = _parallel_lanes(centreline, lanes, 0, lane_width, speed_limit, points)
    x = np.linspace(x0, merge_s, max(2, int(ramp_length / pl.DENSE_SPACING) + 1))
    taper = np.stack((x, -ramp_offset * 0.5 * (1.0 + np.cos(math.pi * (x - x0) / ramp_length))), axis=1)
    ramp = pl.join(taper, pl.dense_line((merge_s, 0.0), (length, 0.0)))
    paths.append(Lane(pl.resample(ramp, points), lane_width, ramp_speed_limit))
    routes["ramp"] = lanes
    return RoadGeometry(tuple(paths), routes)
