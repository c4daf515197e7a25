"""Sensors: geometry of the rasters, occlusion, noise statistics, determinism."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sim.config import RasterConfig
from sim.sensors import detect_objects, ego_xy_to_cell, ground_truth, render_frame
from sim.sensors.lanes import LANE_AHEAD, LANE_BEHIND, LANE_POINTS, LANE_SLOTS, LANE_SPACING
from sim.sensors.noise import draw_ghosts, max_raster_noise
from sim.state import AgentKind
from tests.sim.sensor_worlds import (
    Box,
    concat_worlds,
    sensor_world,
    straight_road,
    with_steps,
)
from tests.strategies import SETTINGS

RASTER = RasterConfig()
H = RASTER.size
EGO_ROW = int(RASTER.ego_row_fraction * H)  # 89: the row holding the sensor origin
EGO_COL = H // 2
PEDESTRIAN = dict(length=0.6, width=0.6, height=1.8, kind=AgentKind.PEDESTRIAN)


def occupied(frame, b: int = 0) -> torch.Tensor:
    """[K, 2] (row, column) of the occupied cells of episode b."""
    return frame.bev[b, 0].nonzero()


def cells_near(xy: tuple[float, float], radius_m: float) -> tuple[slice, slice]:
    """Raster window around ego-frame point `xy`."""
    row, col, _ = ego_xy_to_cell(torch.tensor(xy), RASTER)
    r = math.ceil(radius_m / RASTER.resolution)
    return slice(int(row) - r, int(row) + r + 1), slice(int(col) - r, int(col) + r + 1)


def noisy_world(batch: int, **settings):
    """Eight pedestrians in a ring at 12 m: none shadows another."""
    ring = [Box(12 * math.cos(a), 12 * math.sin(a), **PEDESTRIAN) for a in torch.arange(8) * math.pi / 4]
    return sensor_world([ring] * batch, **settings)


def test_object_ahead_appears_ahead_of_the_ego_row_in_the_centre_columns():
    world = sensor_world([[Box(10.0, 0.0, height=1.7)]])
    frame = render_frame(world).validate()
    cells = occupied(frame)
    assert len(cells) > 0
    # Only the rear face, at x = 10 - 2.25 m, faces the sensor (plus the first
    # DEPTH_TOLERANCE of the sides, which lands in the next row ahead).
    rear_face_row = math.floor(RASTER.ego_row_fraction * H - 7.75 / RASTER.resolution)
    assert set(cells[:, 0].tolist()) == {rear_face_row, rear_face_row - 1}
    assert rear_face_row < EGO_ROW
    assert bool(((cells[:, 1] - EGO_COL).abs() <= 3).all())
    heights = frame.bev[0, 1][frame.bev[0, 0] > 0]
    assert torch.allclose(heights, torch.full_like(heights, 1.7))
    assert float(frame.bev[0, 1][frame.bev[0, 0] == 0].abs().max()) == 0.0


def test_left_is_left_and_right_is_right():
    left = render_frame(sensor_world([[Box(0.0, 8.0)]])).validate()
    right = render_frame(sensor_world([[Box(0.0, -8.0)]])).validate()
    assert bool((occupied(left)[:, 1] < EGO_COL).all())
    assert bool((occupied(right)[:, 1] >= EGO_COL).all())
    truth = ground_truth(sensor_world([[Box(0.0, 8.0, yaw=0.4, speed=3.0)]])).validate()
    assert torch.allclose(truth.xy[0, 0], torch.tensor([0.0, 8.0]), atol=1e-4)
    assert math.isclose(float(truth.yaw[0, 0]), 0.4, abs_tol=1e-5)
    expected_velocity = torch.tensor([3.0 * math.cos(0.4), 3.0 * math.sin(0.4)])
    assert torch.allclose(truth.velocity[0, 0], expected_velocity, atol=1e-4)


@pytest.mark.parametrize("occluder_x", [5.0, 12.0])
def test_small_object_behind_a_big_one_is_hidden(occluder_x: float):
    """Also with the occluder close to the sensor, where its outline points are
    several bearing bins apart: its outline segments must still shadow."""
    truck = Box(occluder_x, 0.0, length=6.0, width=2.5, height=3.0)
    walker = Box(occluder_x + 10.0, 0.3, **PEDESTRIAN)
    hidden = sensor_world([[truck, walker]])
    truth = ground_truth(hidden).validate()
    assert truth.visible[0].tolist()[:2] == [True, False]
    rows, cols = cells_near((occluder_x + 10.0, 0.3), 1.0)
    assert float(render_frame(hidden).bev[0, 0, rows, cols].sum()) == 0.0

    alone = sensor_world([[Box(-30.0, 0.0), walker]])  # the truck moved away behind the ego
    assert ground_truth(alone).visible[0, 1].item()
    assert float(render_frame(alone).bev[0, 0, rows, cols].sum()) > 0.0


def test_far_side_of_a_box_is_not_seen():
    frame = render_frame(sensor_world([[Box(10.0, 0.0)]]))
    rows, cols = cells_near((12.25, 0.0), 0.5)  # the front face, facing away
    assert float(frame.bev[0, 0, rows, cols].sum()) == 0.0


def test_objects_beyond_range_are_invisible():
    world = sensor_world([[Box(15.0, 0.0, **PEDESTRIAN), Box(0.0, -25.0, **PEDESTRIAN)]], sensor_range=20.0)
    truth = ground_truth(world).validate()
    assert truth.visible[0, :2].tolist() == [True, False]
    frame = render_frame(world)
    rows, cols = cells_near((0.0, -25.0), 1.0)
    assert float(frame.bev[0, 0, rows, cols].sum()) == 0.0
    detected = detect_objects(world).validate()
    assert detected.valid[0, :2].tolist() == [True, False]


def test_map_lines_up_with_the_ego_heading():
    """Roads along and across the ego's heading, both through the ego centre."""
    centre, yaw = (10.0, -5.0), 0.3
    behind = (centre[0] - 30 * math.cos(yaw), centre[1] - 30 * math.sin(yaw))
    world = straight_road(sensor_world([[]], ego_centre=centre, ego_yaw=yaw), start=behind, heading=yaw)
    drivable = render_frame(world).validate().map[0, 0]
    assert bool((drivable[:, EGO_COL - 2 : EGO_COL + 2] == 1.0).all())  # 3.5 m wide, centred
    assert float(drivable[:, : EGO_COL - 6].sum() + drivable[:, EGO_COL + 6 :].sum()) == 0.0

    across = yaw + math.pi / 2
    right = (centre[0] - 30 * math.cos(across), centre[1] - 30 * math.sin(across))
    world = straight_road(sensor_world([[]], ego_centre=centre, ego_yaw=yaw), start=right, heading=across)
    drivable = render_frame(world).map[0, 0]
    assert bool((drivable[EGO_ROW - 2 : EGO_ROW + 2, 8:-8] == 1.0).all())
    assert float(drivable[: EGO_ROW - 6].sum() + drivable[EGO_ROW + 6 :].sum()) == 0.0


def test_route_starts_at_the_ego_and_is_evenly_spaced():
    centre, yaw = (10.0, -5.0), 0.3
    behind = (centre[0] - 30 * math.cos(yaw), centre[1] - 30 * math.sin(yaw))
    world = straight_road(
        sensor_world([[], []], ego_centre=centre, ego_yaw=yaw),
        start=behind,
        heading=yaw,
        length=60.0,
        speed_limit=8.0,
    )
    world = dataclasses.replace(world, ego=dataclasses.replace(world.ego, progress=torch.tensor([30.0, 50.0])))
    frame = render_frame(world, route_points=8, route_spacing=2.5).validate()
    assert torch.allclose(frame.route[0, 0], torch.zeros(2), atol=1e-3)
    assert torch.allclose(frame.route[1, 0], torch.tensor([20.0, 0.0]), atol=1e-3)
    steps = frame.route[0, 1:] - frame.route[0, :-1]
    assert torch.allclose(steps, torch.tensor([2.5, 0.0]).expand_as(steps), atol=1e-3)
    assert frame.route_valid[0].all()
    assert frame.route_valid[1].tolist() == [True] * 5 + [False] * 3  # 50 + 4 * 2.5 = 60 m
    assert torch.allclose(frame.speed_limit, torch.tensor([8.0, 8.0]))
    assert torch.allclose(frame.ego_pose[0], torch.tensor([*centre, yaw]), atol=1e-5)


def test_lanes_are_the_ego_frame_centrelines_nearest_first_in_their_direction_of_travel():
    centre, yaw = (10.0, -5.0), 0.3
    behind = (centre[0] - 30 * math.cos(yaw), centre[1] - 30 * math.sin(yaw))
    world = straight_road(sensor_world([[], []], ego_centre=centre, ego_yaw=yaw), start=behind, heading=yaw,
                          length=60.0)  # fmt: skip
    far = [5.0, 100.0]  # m: the second episode's ego stands 100 m beside the road, out of range
    progress = torch.tensor([30.0, 30.0])
    world = dataclasses.replace(world, ego=dataclasses.replace(world.ego, progress=progress))
    shifted = world.ego.xy + torch.tensor(far)[:, None] * torch.tensor([-math.sin(yaw), math.cos(yaw)])
    world = dataclasses.replace(world, ego=dataclasses.replace(world.ego, xy=shifted))
    frame = render_frame(world).validate()
    assert frame.lanes.shape[1:] == (LANE_SLOTS, LANE_POINTS, 2)
    lane, valid = frame.lanes[0, 0], frame.lanes_valid[0, 0]
    # 20 m behind the ego's nearest point up to the road's end at +30 m, 3 m apart, along +x, 5 m to the right
    assert int(valid.sum()) == 17 and not bool(valid[17:].any())
    assert torch.allclose(lane[0], torch.tensor([-20.0, -5.0]), atol=1e-3)
    steps = lane[1:17] - lane[:16]
    assert torch.allclose(steps, torch.tensor([LANE_SPACING, 0.0]).expand_as(steps), atol=1e-3)
    assert not bool(frame.lanes_valid[0, 1:].any()) and not bool(frame.lanes_valid[1].any())
    assert float(frame.lanes[~frame.lanes_valid].abs().max()) == 0.0


def test_an_oncoming_lane_is_kept_ahead_of_the_ego_where_its_traffic_comes_from():
    centre, yaw = (10.0, -5.0), 0.3
    ahead = (centre[0] + 50 * math.cos(yaw), centre[1] + 50 * math.sin(yaw))
    world = straight_road(sensor_world([[]], ego_centre=centre, ego_yaw=yaw), start=ahead, heading=yaw + math.pi,
                          length=100.0)  # fmt: skip
    frame = render_frame(world).validate()
    lane, valid = frame.lanes[0, 0], frame.lanes_valid[0, 0]
    assert bool(valid.all())  # 49 m ahead of the ego to 20 m behind it, running towards it
    assert torch.allclose(lane[0], torch.tensor([LANE_AHEAD, 0.0]), atol=1e-3)
    assert torch.allclose(lane[-1], torch.tensor([-LANE_BEHIND, 0.0]), atol=1e-3)


def test_same_state_gives_identical_outputs():
    world = noisy_world(3, position_jitter=0.3, miss_prob=0.3, ghost_rate=3.0, raster_noise=0.01)
    for render in (render_frame, detect_objects):
        first, second = render(world), render(world)
        for name in first.field_names():
            assert torch.equal(getattr(first, name), getattr(second, name)), name


def test_episode_frame_does_not_depend_on_its_batch():
    settings = dict(position_jitter=0.3, miss_prob=0.3, ghost_rate=3.0, raster_noise=0.01)
    episode = noisy_world(1, seed=7, step=5, **settings)
    others = [
        noisy_world(2, seed=1, step=9, ego_yaw=1.0, **settings),
        sensor_world([[Box(5.0, 1.0)]], seed=3, step=2, **settings),
    ]
    batch = concat_worlds([others[0], episode, others[1]])
    for render in (render_frame, detect_objects):
        alone, together = render(episode), render(batch).index(slice(2, 3))
        for name in alone.field_names():
            assert torch.equal(getattr(alone, name), getattr(together, name)), name


def test_noise_changes_from_step_to_step():
    world = noisy_world(1, position_jitter=0.3, raster_noise=0.01)
    assert not torch.equal(render_frame(world).bev, render_frame(with_steps(world, 1)).bev)


def test_miss_rate_matches_miss_prob():
    world = noisy_world(64, miss_prob=0.3)
    reported = torch.cat([detect_objects(with_steps(world, t)).valid[:, :8] for t in range(8)])
    assert ground_truth(world).visible[:, :8].all()
    miss_rate = 1.0 - reported.float().mean().item()  # 4096 draws: std 0.007
    assert abs(miss_rate - 0.3) < 0.03


def test_missed_objects_leave_no_returns_and_reported_ones_do():
    world = noisy_world(16, miss_prob=0.5)
    frame, detected = render_frame(world), detect_objects(world)
    truth = ground_truth(world)
    for b in range(16):
        for n in range(8):
            rows, cols = cells_near(tuple(truth.xy[b, n].tolist()), 0.8)
            hits = float(frame.bev[b, 0, rows, cols].sum())
            assert (hits > 0) == bool(detected.valid[b, n]), (b, n)


def test_mean_ghost_count_matches_ghost_rate_and_is_capped():
    worlds = [with_steps(sensor_world([[]] * 250, ghost_rate=2.0), t) for t in range(8)]
    counts = torch.cat([draw_ghosts(w, 8).objects.present.sum(1) for w in worlds]).float()
    assert abs(counts.mean().item() - 2.0) < 0.15  # 2000 frames: std of the mean 0.03
    assert abs(counts.var().item() - 2.0) < 0.4  # Poisson: variance = mean
    crowded = draw_ghosts(sensor_world([[]] * 50, ghost_rate=30.0), 8).objects.present
    assert bool((crowded.sum(1) == 8).all())


def test_ghosts_are_reported_with_low_scores_inside_the_range():
    worlds = [with_steps(sensor_world([[]] * 100, ghost_rate=2.0, sensor_range=30.0), t) for t in range(4)]
    detected = [detect_objects(w).validate() for w in worlds]
    ghosts = torch.cat([d.valid[:, 8:] for d in detected])
    scores = torch.cat([d.score[:, 8:] for d in detected])[ghosts]
    xy = torch.cat([d.xy[:, 8:] for d in detected])[ghosts]
    assert abs(ghosts.sum(1).float().mean().item() - 2.0) < 0.25  # few are hidden by others
    assert bool((scores >= 0.05).all() & (scores < 0.75).all())
    assert 0.2 < (scores > 0.5).float().mean().item() < 0.5  # some pass a 0.5 threshold
    assert bool((xy.norm(dim=-1) <= 30.0 + 1.5).all())
    assert bool((torch.cat([d.agent_id[:, 8:] for d in detected]) == -1).all())


def test_position_jitter_has_the_configured_spread():
    world = noisy_world(64, position_jitter=0.25)
    truth = ground_truth(world).xy[:, :8]
    errors = torch.cat([detect_objects(with_steps(world, t)).xy[:, :8] - truth for t in range(4)])
    assert errors.mean(dim=(0, 1)).abs().max().item() < 0.02
    std = errors.reshape(-1, 2).std(dim=0)  # 2048 draws per axis: std error ~1.6 %
    assert torch.allclose(std, torch.full((2,), 0.25), rtol=0.08)


def test_salt_noise_lights_the_configured_fraction_of_empty_cells():
    world = sensor_world([[]] * 32, raster_noise=0.01)
    occupancy = render_frame(world).validate().bev[:, 0]
    assert abs(occupancy.mean().item() - 0.01) < 0.001  # 524k cells: std 1.4e-4
    too_noisy = sensor_world([[]], raster_noise=max_raster_noise(RASTER) + 0.01)
    with pytest.raises(ValueError, match="raster_noise"):
        render_frame(too_noisy)


def test_scores_fall_with_range():
    world = sensor_world([[Box(6.0, 0.0, **PEDESTRIAN), Box(-40.0, 10.0, **PEDESTRIAN)]] * 16)
    scores = detect_objects(world).validate().score[:, :2]
    assert bool((scores >= 0.5).all() & (scores < 1.0).all())
    assert bool((scores[:, 0] > scores[:, 1]).all())


def test_bad_arguments_are_named():
    world = sensor_world([[]])
    with pytest.raises(ValueError, match="route_points"):
        render_frame(world, route_points=0)
    with pytest.raises(ValueError, match="route_spacing"):
        render_frame(world, route_spacing=0.0)


@SETTINGS
@given(
    boxes=st.lists(
        st.tuples(
            st.floats(-15, 30),
            st.floats(-25, 25),
            st.floats(-math.pi, math.pi),
            st.floats(0.5, 8.0),
            st.floats(0.5, 2.5),
        ),
        min_size=1,
        max_size=6,
    ),
    ego_yaw=st.floats(-math.pi, math.pi),
)
def test_noise_free_returns_lie_on_visible_outlines(boxes, ego_yaw):
    """Every occupied cell is within a cell of some box's outline, and every
    visible box returns at least one cell (a box with under VISIBLE_FRACTION
    of its outline seen may still return a few)."""
    placed = [Box(x, y, yaw=a, length=length, width=width) for x, y, a, length, width in boxes]
    world = sensor_world([placed], ego_yaw=ego_yaw)
    frame, truth = render_frame(world).validate(), ground_truth(world).validate()
    cells = occupied(frame).double()
    row0, col0 = RASTER.ego_row_fraction * H, H / 2
    centres = torch.stack(
        ((row0 - cells[:, 0] - 0.5) * RASTER.resolution, (col0 - cells[:, 1] - 0.5) * RASTER.resolution), -1
    )  # (K, 2) ego-frame cell centres
    visible = truth.visible[0, : len(placed)]
    rel = centres[:, None, :] - truth.xy[0, : len(placed)].double()[None]  # (K, n, 2)
    c, s = torch.cos(truth.yaw[0, : len(placed)]).double(), torch.sin(truth.yaw[0, : len(placed)]).double()
    local = torch.stack((c * rel[..., 0] + s * rel[..., 1], -s * rel[..., 0] + c * rel[..., 1]), -1)
    half = torch.stack((truth.length[0, : len(placed)], truth.width[0, : len(placed)]), -1).double() / 2
    slack = RASTER.resolution * math.sqrt(0.5) + 1e-6
    inside_grown = (local.abs() <= half + slack).all(-1)
    inside_shrunk = (local.abs() < half - slack).all(-1)
    on_outline = inside_grown & ~inside_shrunk  # (K, n)
    assert bool(on_outline.any(1).all())
    for n in range(len(placed)):
        if visible[n]:
            assert bool(on_outline[:, n].any()), n


def test_frame_and_detections_share_one_scan_and_equal_the_separate_calls():
    from sim.sensors import frame_and_detections

    world = sensor_world(
        [[Box(x=12.0, y=0.5), Box(x=-8.0, y=3.0, kind=AgentKind.PEDESTRIAN, length=0.6, width=0.6)]],
        position_jitter=0.2,
        miss_prob=0.2,
        ghost_rate=2.0,
        raster_noise=0.01,
        seed=5,
        step=3,
    )
    frame, det = frame_and_detections(world)
    alone_frame, alone_det = render_frame(world), detect_objects(world)
    for name in frame.field_names():
        assert torch.equal(getattr(frame, name), getattr(alone_frame, name)), name
    for name in det.field_names():
        assert torch.equal(getattr(det, name), getattr(alone_det, name)), name
