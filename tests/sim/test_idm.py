"""IDM lane following, leader search and MOBIL lane changes."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import ConfigError
from sim.dynamics import driver, lanes, neighbours
from sim.dynamics.idm import IdmSettings, idm_accel, leaders
from sim.step import EgoAction, step
from tests.sim.worlds import arc, idm_car, park_ego, random_highway, road_world, set_ego, static_car, straight

LENGTH = 4.5  # m, car length used by the helpers


def hold(batch: int = 1) -> EgoAction:
    zero = torch.zeros(batch)
    return EgoAction(accel=zero, steer=zero)


def one_lane(length: float = 400.0):
    return park_ego(road_world([straight(96, length)], agents=4))


def two_lanes(length: float = 600.0):
    return park_ego(road_world([straight(96, length), straight(96, length, offset=3.5)], agents=4))


def test_free_road_accelerates_to_desired_speed():
    world = idm_car(one_lane(2000.0), 0, 0, path=0, s=0.0, speed=5.0, desired_speed=15.0)
    for _ in range(400):
        world = step(world, hold())
    assert float(world.agents.speed[0, 0]) == pytest.approx(15.0, abs=0.2)
    assert float(world.agents.accel[0, 0]) < 0.1


def test_follower_stops_behind_stopped_car_without_collision():
    world = idm_car(one_lane(), 0, 0, path=0, s=10.0, speed=15.0, desired_speed=15.0, min_gap=2.0)
    world = static_car(world, 0, 1, path=0, s=150.0)
    gaps = []
    for _ in range(300):
        world = step(world, hold())
        gaps.append(float(world.agents.s[0, 1] - world.agents.s[0, 0]) - LENGTH)
    assert min(gaps) >= 2.0 * 0.5
    assert float(world.agents.speed[0, 0]) < 0.05
    assert gaps[-1] == pytest.approx(2.0, abs=0.3)
    assert float(world.agents.accel.min()) >= -9.0 - 1e-4


def test_idm_formula_matches_textbook():
    d = driver.Driver(*(torch.tensor([[x]]) for x in (20.0, 1.5, 2.0, 1.0, 2.0)))
    v, gap, dv = torch.tensor([[10.0]]), torch.tensor([[30.0]]), torch.tensor([[2.0]])
    got = idm_accel(d, v, gap, dv, torch.tensor([[True]]), driver.DEFAULT_IDM)
    s_star = 2.0 + 10.0 * 1.5 + 10.0 * 2.0 / (2 * math.sqrt(1.0 * 2.0))
    want = 1.0 * (1 - (10 / 20) ** 4 - (s_star / 30.0) ** 2)
    assert float(got) == pytest.approx(want, rel=1e-5)
    no_leader = idm_accel(d, v, gap, dv, torch.tensor([[False]]), driver.DEFAULT_IDM)
    assert float(no_leader) == pytest.approx(1 - 0.5**4, rel=1e-5)


def test_car_in_the_next_lane_is_not_a_leader():
    world = idm_car(two_lanes(), 0, 0, path=0, s=10.0, speed=10.0, desired_speed=10.0)
    world = static_car(world, 0, 1, path=1, s=25.0)
    leader = leaders(world)
    assert not bool(leader.exists[0, 0])
    world = static_car(world, 0, 2, path=0, s=40.0)
    leader = leaders(world)
    assert int(leader.index[0, 0]) == 2
    assert float(leader.gap[0, 0]) == pytest.approx(30.0 - LENGTH, abs=1e-3)


def test_leader_found_on_a_curved_road():
    radius = 60.0
    road = road_world([arc(96, radius, 1.5 * math.pi), arc(96, radius, 1.5 * math.pi, offset=3.5)], agents=4)
    world = idm_car(park_ego(road), 0, 0, path=0, s=5.0, speed=12.0, desired_speed=12.0)
    world = static_car(world, 0, 1, path=0, s=55.0)  # 50 m further round the bend
    world = static_car(world, 0, 2, path=1, s=30.0)  # in the inner lane: not a leader
    leader = leaders(world)
    assert int(leader.index[0, 0]) == 1
    # Gaps are measured along the follower's heading (conservative on curves).
    along = radius * math.sin(50.0 / radius)
    assert float(leader.gap[0, 0]) == pytest.approx(along - LENGTH, abs=0.5)
    for _ in range(250):
        world = step(world, hold())
    gap = float(world.agents.s[0, 1] - world.agents.s[0, 0]) - LENGTH
    assert float(world.agents.speed[0, 0]) < 0.05
    assert 1.0 <= gap <= 3.0


@pytest.mark.parametrize("yields", [True, False])
def test_only_yielding_agents_see_the_ego(yields):
    world = idm_car(one_lane(), 0, 0, path=0, s=10.0, speed=10.0, desired_speed=10.0, yields_to_ego=yields)
    world = set_ego(world, xy=(60.0, 0.0), speed=0.0)  # stopped in the lane, 50 m ahead
    for _ in range(150):
        world = step(world, EgoAction(accel=torch.zeros(1), steer=torch.zeros(1)))
    passed = float(world.agents.xy[0, 0, 0]) > 70.0
    assert passed != yields
    if yields:
        ego_rear = 60.0 - 0.5 * (4.6 - 2.8)  # rear axle minus the rear overhang
        assert float(world.agents.xy[0, 0, 0]) + 0.5 * LENGTH < ego_rear - 1.0


def test_mobil_overtakes_a_slow_car_and_settles_in_the_new_lane():
    world = idm_car(two_lanes(), 0, 0, path=0, s=10.0, speed=20.0, desired_speed=25.0, politeness=0.3)
    world = idm_car(world, 0, 1, path=0, s=60.0, speed=10.0, desired_speed=10.0)
    previous = world.agents.xy[0, 0].clone()
    biggest_move = 0.0
    for _ in range(100):
        world = step(world, hold())
        biggest_move = max(biggest_move, float((world.agents.xy[0, 0] - previous).norm()))
        previous = world.agents.xy[0, 0].clone()
    assert int(world.agents.path[0, 0]) == 1
    assert float(world.agents.s[0, 0]) > float(world.agents.s[0, 1])  # overtaken
    assert abs(float(world.agents.d[0, 0])) < 0.05  # offset settled within ~3 s
    assert float(world.agents.xy[0, 0, 1]) == pytest.approx(3.5, abs=0.05)
    assert biggest_move < 25.0 * 0.1 + 0.2  # no jump at the lane change


def test_impolite_setting_below_zero_never_changes_lane():
    world = idm_car(two_lanes(), 0, 0, path=0, s=10.0, speed=20.0, desired_speed=25.0, politeness=-1.0)
    world = idm_car(world, 0, 1, path=0, s=60.0, speed=10.0, desired_speed=10.0)
    for _ in range(200):
        world = step(world, hold())
        assert int(world.agents.path[0, 0]) == 0
    assert float(world.agents.d.abs().max()) == 0.0


def test_mobil_refuses_an_unsafe_gap():
    world = idm_car(two_lanes(), 0, 0, path=0, s=30.0, speed=20.0, desired_speed=25.0, politeness=0.3)
    world = idm_car(world, 0, 1, path=0, s=60.0, speed=10.0, desired_speed=10.0)
    # A fast car right behind in the target lane: cutting in would make it brake hard.
    world = idm_car(world, 0, 2, path=1, s=24.0, speed=25.0, desired_speed=25.0)
    world = step(world, hold())
    assert int(world.agents.path[0, 0]) == 0


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="IdmSettings.max_decel"):
        IdmSettings(max_decel=0.0)
    with pytest.raises(ConfigError, match="IdmSettings.cooldown"):
        IdmSettings(change_duration=3.0, cooldown=1.0)


def test_searching_in_blocks_gives_the_same_neighbours(monkeypatch):
    world = random_highway(6, 8, seed=1)
    whole, whole_run = leaders(world), run_steps(world, 30)
    monkeypatch.setattr(neighbours, "PAIRS_PER_BLOCK", 2 * 8 * 9)  # two episodes per block
    blocked, blocked_run = leaders(world), run_steps(world, 30)
    assert torch.equal(whole.index, blocked.index) and torch.equal(whole.gap, blocked.gap)
    assert torch.equal(whole_run.agents.xy, blocked_run.agents.xy)
    assert torch.equal(whole_run.agents.path, blocked_run.agents.path)
    assert bool((whole_run.agents.path != world.agents.path).any())  # lane changes happened


def run_steps(world, steps):
    for _ in range(steps):
        world = step(world, hold(world.batch_size))
    return world


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), uniform=st.booleans())
def test_locate_finds_the_segment_a_full_search_finds(seed, uniform):
    g = torch.Generator().manual_seed(seed)
    B, L, P, N = 3, 4, 40, 16
    spacing = torch.ones(B, L, P - 1) if uniform else 0.05 + torch.rand(B, L, P - 1, generator=g) * 3.0
    path_s = torch.cat((torch.zeros(B, L, 1), torch.cumsum(spacing, dim=-1)), dim=-1)
    roadmap = dataclasses.replace(road_world([straight(P, 10.0)], batch=B).map, path_s=path_s)
    path = torch.randint(0, L, (B, N), generator=g)
    s = torch.rand(B, N, generator=g) * 140.0 - 10.0  # some before the start and past the end
    rows = lanes._Rows(path_s, path)
    want = lanes._search(rows, s)
    assert torch.equal(lanes.locate(roadmap, path, s).index, want)
    hint = (want - torch.randint(0, 3, (B, N), generator=g)).clamp_min(0)
    assert torch.equal(lanes.locate(roadmap, path, s, hint=hint).index, want)
    # Agrees with the textbook definition: the last point at or before s.
    reference = (torch.gather(path_s, 1, path.unsqueeze(-1).expand(B, N, P)) <= s.unsqueeze(-1)).sum(-1) - 1
    assert torch.equal(want, reference.clamp(0, P - 2))
