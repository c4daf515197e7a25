"""Road layouts, their rasters, and batching into a RoadMap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sim.geometry import path_pose, sample_raster
from sim.roads import curved_road, intersection, merge_road, stack_roads, straight_road
from sim.roads import polyline as pl

P = 96
WIDTH = 3.5


def _straight(**kw):
    args = dict(lanes=3, oncoming_lanes=2, lane_width=WIDTH, length=200.0, speed_limit=13.9, points=P)
    return straight_road(**{**args, **kw})


def _curve(direction: str, radius: float = 100.0):
    return curved_road(
        lanes=3,
        oncoming_lanes=1,
        lane_width=WIDTH,
        length=150.0,
        speed_limit=13.9,
        radius=radius,
        direction=direction,
        points=P,
    )


def _intersection(lanes: int = 2):
    return intersection(
        lanes=lanes,
        lane_width=WIDTH,
        arm_length=40.0,
        speed_limit=13.9,
        turn_speed_limit=8.0,
        corner_radius=6.0,
        crosswalk_width=4.0,
        crosswalk_gap=1.0,
        points=P,
    )


def _merge():
    return merge_road(
        lanes=2,
        lane_width=WIDTH,
        length=300.0,
        speed_limit=25.0,
        merge_s=150.0,
        ramp_length=80.0,
        ramp_offset=8.0,
        ramp_speed_limit=20.0,
        points=P,
    )


def _one(geom, batch: int = 1):
    return stack_roads([geom], [0] * batch, paths=16, points=P, crosswalks=4).validate()


@pytest.mark.parametrize(
    "geom,expected_pairs",
    [(_straight(), 6), (_curve("left"), 4), (_curve("right"), 4)],
    ids=["straight", "left", "right"],
)
def test_neighbours_share_cross_sections(geom, expected_pairs):
    roadmap = _one(geom)
    pairs = 0
    for i in range(int(roadmap.path_valid.sum())):
        for j in (int(roadmap.path_left[0, i]), int(roadmap.path_right[0, i])):
            if j < 0:
                continue
            pairs += 1
            xy_i, xy_j = roadmap.path_xy[0, i].double(), roadmap.path_xy[0, j].double()
            yaw = roadmap.path_yaw[0, i].double()
            tangent = torch.stack((torch.cos(yaw), torch.sin(yaw)), -1)
            across = xy_j - xy_i
            # Point k of a neighbour lies straight across from point k, one lane width away.
            assert torch.allclose((across * tangent).sum(-1), torch.zeros(P, dtype=torch.float64), atol=1e-3)
            assert torch.allclose(across.norm(dim=-1), torch.full((P,), WIDTH, dtype=torch.float64), atol=1e-3)
    assert pairs == expected_pairs  # each neighbour relation counted from both sides


def test_oncoming_lanes_run_the_other_way_and_never_neighbour_ours():
    roadmap = _one(_straight())
    assert torch.allclose(roadmap.path_yaw[0, :3], torch.zeros(3, P), atol=1e-6)
    assert torch.allclose(roadmap.path_yaw[0, 3:5].abs(), torch.full((2, P), math.pi), atol=1e-5)
    assert int(roadmap.path_left[0, 2]) == -1 and int(roadmap.path_left[0, 3]) == -1


@pytest.mark.parametrize("direction,sign", [("left", 1.0), ("right", -1.0)])
def test_curvature_sign_and_magnitude(direction, sign):
    radius = 80.0
    roadmap = _one(_curve(direction, radius))
    curv = roadmap.path_curvature[0]
    # Lane k sits k lane widths left of lane 0: radius - k*w on a left curve, + k*w on a right one.
    for k in range(3):
        expected = sign / (radius - sign * k * WIDTH)
        assert torch.allclose(curv[k], torch.full((P,), expected), rtol=1e-4)
    # The oncoming lane is driven the other way round the same centre.
    assert torch.allclose(curv[3], torch.full((P,), -sign / (radius - sign * 3 * WIDTH)), rtol=1e-4)
    heading_change = float(roadmap.path_yaw[0, 0, -1] - roadmap.path_yaw[0, 0, 0])
    assert heading_change == pytest.approx(sign * 150.0 / radius, abs=1e-4)


def test_paths_have_equal_spacing_and_consistent_arc_length():
    roadmap = _one(_intersection())
    for i in range(int(roadmap.path_valid.sum())):
        seg = (roadmap.path_xy[0, i, 1:] - roadmap.path_xy[0, i, :-1]).norm(dim=-1)
        assert float(seg.max() - seg.min()) < 0.02 * float(seg.mean())
        assert float(roadmap.path_s[0, i, 0]) == 0.0
        assert torch.allclose(roadmap.path_s[0, i, 1:], torch.cumsum(seg, 0), atol=1e-3)
        assert float(roadmap.path_length[0, i]) == pytest.approx(float(roadmap.path_s[0, i, -1]))


def test_intersection_turns_are_continuous_and_end_where_they_should():
    geom = _intersection(lanes=2)
    assert len(geom.paths) == 16
    for name, index in geom.routes.items():
        xy = geom.paths[index].xy
        seg = np.linalg.norm(np.diff(xy, axis=0), axis=1)
        assert seg.max() <= 1.5 * seg.mean(), name
    west_left, west_right = geom.paths[geom.route("west/left")].xy, geom.paths[geom.route("west/right")].xy
    yaw_left, yaw_right = pl.headings(west_left), pl.headings(west_right)
    assert yaw_left[0] == pytest.approx(0.0, abs=1e-3) and yaw_left[-1] == pytest.approx(math.pi / 2, abs=1e-3)
    assert yaw_right[-1] == pytest.approx(-math.pi / 2, abs=1e-3)
    # Left turn ends in the innermost northbound lane, right turn in the outermost southbound lane.
    assert west_left[-1, 0] == pytest.approx(0.5 * WIDTH)
    assert west_right[-1, 0] == pytest.approx(-1.5 * WIDTH)
    # Every arm's turns are the west arm's rotated: the south approach's left turn ends heading west.
    south_left = geom.paths[geom.route("south/left")].xy
    assert abs(pl.headings(south_left)[-1]) == pytest.approx(math.pi, abs=1e-3)
    assert len(geom.crosswalks) == 4


def test_merge_ramp_ends_on_lane_zero():
    geom = _merge()
    ramp, lane0 = geom.paths[geom.route("ramp")].xy, geom.paths[geom.route("lane/0")].xy
    assert ramp[0, 1] == pytest.approx(-8.0)
    assert np.allclose(ramp[-1], lane0[-1])
    after = ramp[:, 0] >= 150.0
    assert np.allclose(ramp[after, 1], 0.0, atol=1e-9)


@pytest.mark.parametrize(
    "geom",
    [_straight(shoulder_width=2.5, crosswalk_s=100.0), _curve("right"), _intersection(), _merge()],
    ids=["straight", "curve", "intersection", "merge"],
)
def test_raster_marks_lanes_drivable_and_offroad_empty(geom):
    roadmap = _one(geom)
    valid = roadmap.path_valid[0]
    xy = roadmap.path_xy[:, valid]  # (1, L, P, 2)
    rasters = (roadmap.raster, roadmap.raster_origin, roadmap.raster_resolution)
    assert bool((sample_raster(*rasters, xy, channel=0) == 1.0).all())
    # Centrelines are one cell thick: a centre point on a cell boundary may be marked next door.
    res = float(roadmap.raster_resolution[0])
    nudges = torch.tensor([[dx, dy] for dx in (-res, 0.0, res) for dy in (-res, 0.0, res)])
    near = torch.stack([sample_raster(*rasters, xy + n, channel=1) for n in nudges]).amax(0)
    assert bool((near == 1.0).all())
    # 20 m right of each path is off the road: at its midpoint, or near its start at an
    # intersection (whose midpoints lie in the box).
    path = torch.arange(int(valid.sum()))[None]
    along = roadmap.path_length[:, valid] / 2 if not geom.areas else torch.full(path.shape, 5.0)
    off, _, _ = path_pose(roadmap, path, along, torch.full_like(along, -20.0))
    assert bool((sample_raster(*rasters, off, channel=0) == 0.0).all())


def test_raster_crosswalk_and_shoulder_channels():
    geom = _straight(shoulder_width=2.5, crosswalk_s=100.0)
    roadmap = _one(geom)
    rasters = (roadmap.raster, roadmap.raster_origin, roadmap.raster_resolution)
    on_crosswalk = torch.tensor([[[100.0, 0.0], [100.0, 12.0]]])
    assert bool((sample_raster(*rasters, on_crosswalk, channel=2) == 1.0).all())
    assert float(sample_raster(*rasters, torch.tensor([[[60.0, 0.0]]]), channel=2)) == 0.0
    shoulder = torch.tensor([[[60.0, -(WIDTH + 2.5) / 2]]])
    assert float(sample_raster(*rasters, shoulder, channel=0)) == 1.0


def test_raster_grid_convention():
    """Cell (r, c) has its lower-left corner at origin + (c, r) * resolution."""
    roadmap = _one(_straight(lanes=1, oncoming_lanes=0))
    origin, res = roadmap.raster_origin[0], float(roadmap.raster_resolution[0])
    drivable = roadmap.raster[0, 0]
    rows = torch.nonzero(drivable.any(1)).flatten()
    y_low = float(origin[1]) + float(rows.min()) * res
    y_high = float(origin[1]) + (float(rows.max()) + 1) * res
    assert y_low == pytest.approx(-WIDTH / 2, abs=res) and y_high == pytest.approx(WIDTH / 2, abs=res)


def test_shared_layout_broadcasts_one_raster_and_distinct_layouts_stack():
    shared = _one(_straight(), batch=5)
    assert shared.raster.shape[0] == 1 and shared.path_xy.shape[0] == 5
    mixed = stack_roads([_straight(), _curve("left")], [1, 0, 1], paths=8, points=P, crosswalks=1).validate()
    assert mixed.raster.shape[0] == 3
    assert torch.equal(mixed.path_xy[0], mixed.path_xy[2]) and not torch.equal(mixed.path_xy[0], mixed.path_xy[1])
    rasters = (mixed.raster, mixed.raster_origin, mixed.raster_resolution)
    assert bool((sample_raster(*rasters, mixed.path_xy[:, :3], channel=0) == 1.0).all())


def test_stack_rejects_layouts_over_capacity():
    with pytest.raises(ValueError, match="capacity"):
        stack_roads([_intersection()], [0], paths=8, points=P, crosswalks=4)


def test_curve_rejects_radius_inside_the_road():
    with pytest.raises(ValueError, match="radius"):
        _curve("left", radius=10.0)
