"""Scenario files, the loader's errors, building batches, suites."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from core.config import Timing
from sim.geometry import box_corners, boxes_overlap, ego_corners, path_pose
from sim.scenarios import (
    FAMILIES,
    ScenarioError,
    build_batch,
    episode_steps,
    load_scenario,
    packaged_scenarios,
    packaged_suites,
    resolve_suite,
    scenario_path,
)
from sim.scenarios.params import Choice, Draws, IntUniform, Uniform
from sim.state import AgentKind, Behaviour

DOCS = Path(__file__).resolve().parents[2] / "docs" / "scenarios.md"
SYNTHETIC = [
    "cruising",
    "lead_brake",
    "cut_in",
    "unprotected_left",
    "crosswalk_crowd",
    "occluded_pedestrian",
    "merge",
    "ghost_road",
]


@pytest.fixture
def ethucy_data(tmp_path, monkeypatch):
    """A tiny ETH/UCY file per scene where DRIVESTACK_DATA points: six pedestrians crossing a plaza."""
    lines = []
    for agent in range(6):
        for k in range(40):
            x, y = -6.0 + 0.5 * k, 1.5 * agent - 4.0 + 0.1 * k * (agent % 2)
            lines.append(f"{(k + agent) * 10}\t{agent + 1}.0\t{x:.2f}\t{y:.2f}\n")
    scenes = {"eth": "biwi_eth", "hotel": "biwi_hotel", "univ": "students001", "zara1": "crowds_zara01",
              "zara2": "crowds_zara02"}  # fmt: skip
    for scene, name in scenes.items():
        folder = tmp_path / "ethucy" / scene / "test"
        folder.mkdir(parents=True)
        (folder / f"{name}.txt").write_text("".join(lines))
    monkeypatch.setenv("DRIVESTACK_DATA", str(tmp_path))
    return tmp_path


def _world_tensors(world) -> dict[str, torch.Tensor]:
    out = {"step": world.step, "seed": world.seed}
    for part in ("ego", "agents", "params", "log", "map", "sensor"):
        contract = getattr(world, part)
        out |= {f"{part}.{f.name}": getattr(contract, f.name) for f in dataclasses.fields(contract)}
    return out


def _overlaps(world) -> torch.Tensor:
    """[B] count of overlapping pairs at t = 0 among valid agents and the ego."""
    a = world.agents
    corners = torch.cat((ego_corners(world.ego)[:, None], box_corners(a.xy, a.yaw, a.length, a.width)), 1)
    valid = torch.cat((torch.ones(world.batch_size, 1, dtype=torch.bool), a.valid), 1)
    n = corners.shape[1]
    shape = (world.batch_size, n, n, 4, 2)
    pair = boxes_overlap(corners[:, :, None].expand(shape), corners[:, None].expand(shape))
    pair = pair & valid[:, :, None] & valid[:, None] & ~torch.eye(n, dtype=torch.bool)
    return pair.sum((1, 2)) // 2


def test_every_family_ships_a_scenario_and_suites_cover_them():
    families = {load_scenario(scenario_path(n)).family for n in packaged_scenarios()}
    assert families == set(FAMILIES)
    hard = resolve_suite("hard")
    assert [s.family for s in hard] == SYNTHETIC
    for s in hard:  # realistic noise: jitter, misses and ghosts everywhere
        for key in ("position_jitter", "miss_prob", "ghost_rate"):
            assert float(torch.tensor(s.sensor[key].values()).min()) > 0, (s.name, key)
    assert [s.family for s in resolve_suite("crowds")] == ["ethucy_crowd"]
    assert set(packaged_suites()) >= {"hard", "hard-v2", "crowds", "demo"}


def test_hard_v2_is_harsher_variants_of_every_hard_family_and_never_the_same_files():
    v2 = resolve_suite("hard-v2")
    assert set(SYNTHETIC) <= {s.family for s in v2}
    assert {s.name for s in v2}.isdisjoint(s.name for s in resolve_suite("hard"))
    crowds = [s for s in v2 if s.family == "ethucy_crowd"]
    assert len(crowds) == 5  # one per ETH/UCY scene
    for s in v2:
        assert float(torch.tensor(s.sensor["position_jitter"].values()).min()) > 0.15, s.name


@pytest.mark.parametrize("name", packaged_scenarios())
def test_shipped_scenarios_build_valid_worlds_without_overlaps(name, ethucy_data):
    scenario = load_scenario(scenario_path(name))
    world = build_batch(scenario, [0, 1, 2]).validate()
    assert world.batch_size == 3 and world.dt == Timing().sim_dt
    replays = FAMILIES[scenario.family].replays
    assert world.log.xy.shape[2] == (episode_steps(scenario) + 1 if replays else 1)
    more = build_batch(scenario, list(range(3, 11)))
    for w in (world, more):
        assert _overlaps(w).sum() == 0
    if scenario.family != "ghost_road":
        assert bool((world.agents.valid | world.log.valid.any(-1)).any(-1).all()), "every episode has agents"


@pytest.mark.parametrize("name", packaged_scenarios())
def test_same_seed_same_episode_whatever_the_batch(name, ethucy_data):
    scenario = load_scenario(scenario_path(name))
    a = _world_tensors(build_batch(scenario, [4, 9]))
    b = _world_tensors(build_batch(scenario, [9, 1, 4]))
    for key, x in a.items():
        y = b[key]
        if x.shape[0] == 1 and y.shape[0] == 1:  # a shared raster
            assert torch.equal(x, y), key
            continue
        assert torch.equal(x[0], y[2]) and torch.equal(x[1], y[0]), key


def test_different_seeds_give_different_parameters():
    scenario = load_scenario(scenario_path("cruising"))
    world = build_batch(scenario, list(range(6)))
    assert len(set(world.ego.speed.tolist())) == 6
    assert len(set(world.agents.valid.sum(1).tolist())) > 1
    assert not torch.equal(world.agents.xy[0], world.agents.xy[1])
    lead = build_batch(load_scenario(scenario_path("lead_brake")), [0, 1])
    assert not torch.equal(lead.log.xy[0], lead.log.xy[1])


@pytest.mark.parametrize("name", ["cruising", "cruising_curve", "merge", "unprotected_left", "custom_example"])
def test_idm_agents_sit_on_their_paths(name):
    world = build_batch(load_scenario(scenario_path(name)), [0, 1, 2])
    a = world.agents
    xy, yaw, _ = path_pose(world.map, a.path, a.s, a.d)
    idm = a.valid & (a.behaviour == int(Behaviour.IDM))
    assert bool(idm.any())
    assert torch.allclose(a.xy[idm], xy[idm], atol=1e-4) and torch.allclose(a.yaw[idm], yaw[idm], atol=1e-5)
    assert bool((a.path[idm] >= 0).all()) and bool(world.map.path_valid.gather(1, a.path)[idm].all())


def test_ego_starts_on_its_route_at_the_rear_axle():
    world = build_batch(load_scenario(scenario_path("merge")), [0, 1])
    ego = world.ego
    xy, yaw, _ = path_pose(world.map, ego.route[:, None], torch.full((2, 1), 20.0))
    assert torch.allclose(ego.xy, xy[:, 0]) and torch.allclose(ego.yaw, yaw[:, 0])
    ramp = world.map.path_xy[0, int(ego.route[0])]
    assert float(ramp[0, 1]) == pytest.approx(-8.0)  # the ego starts on the ramp
    # Progress is the box centre's arc length: half a wheelbase ahead of the rear axle.
    assert torch.allclose(ego.progress, 20.0 + ego.wheelbase / 2, atol=0.05)
    assert bool((ego.speed >= 12.0).all())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), lo=st.floats(-100, 100), span=st.floats(0, 50))
def test_draws_stay_in_range(seed, lo, span):
    draws = Draws(torch.tensor([seed, seed + 1]))
    u = draws.sample(Uniform(lo, lo + span), "x", (64,))
    assert bool((u >= lo).all()) and bool((u <= lo + span).all())
    k = draws.sample(IntUniform(-2, 3), "k", (256,))
    assert set(k.unique().tolist()) == {-2, -1, 0, 1, 2, 3}  # both ends are reachable
    assert set(draws.episode_values(Choice(("a", "b")), "c")) <= {"a", "b"}
    assert torch.equal(draws.sample(Uniform(lo, lo + span), "x", (64,)), u)  # keyed, not stateful


def test_randomised_roads_render_per_episode_with_fixed_capacity():
    scenario = load_scenario(scenario_path("cruising")).with_overrides(
        {"road.lanes": {"int_uniform": [2, 3]}, "ego.lane": 0}
    )
    world = build_batch(scenario, list(range(6))).validate()
    assert world.map.raster.shape[0] == 6
    assert world.map.path_valid.shape[1] == 4  # from the largest draw (3 lanes + 1 oncoming), not the batch
    assert set(world.map.path_valid.sum(1).tolist()) == {3, 4}
    assert _overlaps(world).sum() == 0


def test_cruising_builds_a_thousand_episodes_sharing_one_raster():
    world = build_batch(load_scenario(scenario_path("cruising")), list(range(1024)))
    assert world.map.raster.shape[0] == 1 and world.batch_size == 1024


def test_cruising_has_slow_cyclists_in_the_kerb_lane():
    world = build_batch(load_scenario(scenario_path("cruising")), list(range(8)))
    a, p = world.agents, world.params
    cyclists = a.valid & (a.kind == int(AgentKind.CYCLIST))
    vehicles = a.valid & (a.kind == int(AgentKind.VEHICLE))
    assert bool(cyclists.any())
    assert bool((a.path[cyclists] == 0).all())
    assert float(p.desired_speed[cyclists].max()) < float(p.desired_speed[vehicles].min())


def test_lead_brakes_to_a_stop_and_cutter_ends_in_the_ego_lane():
    lead = build_batch(load_scenario(scenario_path("lead_brake")), [0, 1, 2])
    speed = (lead.log.xy[:, 0, 1:] - lead.log.xy[:, 0, :-1]).norm(dim=-1) / lead.dt  # (B, T)
    assert bool((speed[:, -1] < 1e-3).all()) and bool((speed[:, 0] > 5.0).all())
    assert bool((speed[:, 1:] <= speed[:, :-1] + 1e-3).all())  # never speeds up
    ahead = lead.log.xy[:, 0, 0, 0] - lead.ego.xy[:, 0]
    assert bool((ahead > 15.0).all())
    cut = build_batch(load_scenario(scenario_path("cut_in")), [0, 1, 2, 3])
    ego_lane_y = cut.ego.xy[:, 1]
    assert torch.allclose(cut.log.xy[:, 0, -1, 1], ego_lane_y, atol=1e-3)
    assert bool((cut.log.xy[:, 0, 0, 1] - ego_lane_y).abs().sub(3.5).abs().lt(1e-3).all())


def test_unprotected_left_stream_does_not_yield_and_ego_turns_left():
    world = build_batch(load_scenario(scenario_path("unprotected_left")), [0, 1])
    a = world.agents
    assert not bool(world.params.yields_to_ego[a.valid].any())
    route_end_yaw = world.map.path_yaw[0, int(world.ego.route[0]), -1]
    assert float(route_end_yaw) == pytest.approx(math.pi / 2, abs=1e-3)
    assert bool((a.yaw[a.valid] - math.pi).abs().lt(1e-3).all() | (a.yaw[a.valid] + math.pi).abs().lt(1e-3).all())


def test_crosswalk_crowd_walks_across_the_route_ahead():
    world = build_batch(load_scenario(scenario_path("crosswalk_crowd")), [0, 1, 2])
    a, p = world.agents, world.params
    walking = a.valid & (a.behaviour == int(Behaviour.WALK))
    assert bool(walking.any())
    # West crosswalk: between the arm start and the box, spanning the road; walkers go from one side to the other.
    assert bool((p.walk_from[walking][:, 1] * p.walk_to[walking][:, 1] < 0).all())
    assert bool((p.walk_from[walking][:, 0] > world.ego.xy[0, 0] + 5).all())
    assert bool((p.pause_at[walking] <= 1).any()) and bool((p.pause_at[walking] > 1).any())


def test_occluded_pedestrian_stands_in_a_gap_of_the_parked_row():
    world = build_batch(load_scenario(scenario_path("occluded_pedestrian")), [0, 1, 2, 3])
    a = world.agents
    parked = a.valid & (a.behaviour == int(Behaviour.STATIC))
    walker = a.valid & (a.behaviour == int(Behaviour.WALK))
    assert bool((walker.sum(1) == 1).all()) and bool((parked.sum(1) >= 4).all())
    assert bool((a.xy[parked][:, 1] < -1.75).all())  # right of lane 0's edge
    ped_x = a.xy[walker][:, 0]
    gaps = [(a.xy[b][parked[b]][:, 0] - ped_x[b]).abs().min() for b in range(4)]
    assert all(g > 2.3 for g in gaps)  # not alongside a parked vehicle: in a gap


def test_reactive_false_makes_agents_ignore_the_ego():
    scenario = load_scenario(scenario_path("cruising")).with_overrides({"reactive": False})
    world = build_batch(scenario, [0, 1])
    assert not bool(world.params.yields_to_ego.any())


def test_with_overrides_revalidates_and_names_the_key():
    scenario = load_scenario(scenario_path("cruising"))
    dense = scenario.with_overrides({"traffic.vehicles": 32, "traffic.cyclists": 0})
    world = build_batch(dense, [0, 1])
    assert world.num_agents == 32 and bool((world.agents.valid.sum(1) == 32).all())
    with pytest.raises(ScenarioError, match=r"traffic\.vehicles: expected an integer in \[0, 64\]"):
        scenario.with_overrides({"traffic.vehicles": 100})


def test_ethucy_crowd_centroid_lies_ahead_on_the_route(ethucy_data):
    scenario = load_scenario(scenario_path("ethucy_crowd")).with_overrides(
        {"crowd.distance_ahead": 30.0, "crowd.rotation": 90.0}
    )
    world = build_batch(scenario, [0, 1])
    log = world.log
    weight = log.valid[..., None].float()
    centroid = (log.xy * weight).sum((1, 2)) / weight.sum((1, 2))
    front = world.ego.xy[:, 0] + 2.8 / 2 + 4.6 / 2
    assert torch.allclose(centroid[:, 0], front + 30.0, atol=0.5)
    assert torch.allclose(centroid[:, 1], world.ego.xy[:, 1], atol=0.5)
    assert bool((world.agents.kind[world.log.valid.any(-1)] == int(AgentKind.PEDESTRIAN)).all())


def test_ethucy_missing_file_says_to_set_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("DRIVESTACK_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(ScenarioError, match="crowd.data.*not found.*set DRIVESTACK_DATA"):
        build_batch(load_scenario(scenario_path("ethucy_crowd")), [0])


# -- loader errors ------------------------------------------------------------

CRUISING_TEXT = scenario_path("cruising").read_text()


def _variant(tmp_path, old: str, new: str) -> Path:
    assert old in CRUISING_TEXT
    path = tmp_path / "variant.yaml"
    path.write_text(CRUISING_TEXT.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    "old,new,key,expected",
    [
        ("  lanes: 3\n", "  lanes: three\n", "road.lanes", "expected an integer in [1, 6]"),
        ("  lanes: 3\n", "  lanes: 9\n", "road.lanes", "out of range"),
        ("  lanes: 3\n", "  lanes: 3\n  lane_count: 3\n", "road.lane_count", "unknown key"),
        ("duration: 20.0\n", "", "duration", "missing key"),
        ("  s: 60.0\n", "  s: {uniform: [70.0, 50.0]}\n", "ego.s.uniform", "lo <= hi"),
        ("  s: 60.0\n", "  s: {gaussian: [60.0, 1.0]}\n", "ego.s", "exactly one of"),
        (
            "  cyclists: {int_uniform: [1, 3]}\n",
            "  cyclists: {uniform: [1, 3]}\n",
            "traffic.cyclists.uniform",
            "use int_uniform",
        ),
        (
            "  vehicles: {int_uniform: [14, 22]}\n",
            "  vehicles: {choice: [10, 80]}\n",
            "traffic.vehicles.choice",
            "out of range",
        ),
        ("    min_gap: 2.0\n", "    min_gap: [2.0]\n", "traffic.idm.min_gap", "expected a number"),
        ("reactive: true\n", "reactive: maybe\n", "reactive", "true or false"),
        ("family: cruising\n", "family: parade\n", "family", "expected one of"),
        ("  type: straight\n", "  type: curved\n", "road.radius", "missing key"),
        ("  s: 60.0\n", "  s: 500.0\n", "ego.s", "expected < road.length"),
        ("  lane: {int_uniform: [0, 2]}\n", "  lane: 3\n", "ego.lane", "below road.lanes"),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path, old, new, key, expected):
    path = _variant(tmp_path, old, new)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}:"), message
    assert expected in message, message


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = _variant(tmp_path, "  lanes: 3\n", "  lanes: [3\n")
    with pytest.raises(ScenarioError, match=rf"^{re.escape(str(path))}: malformed YAML at line \d+"):
        load_scenario(path)


def test_family_checks_name_the_key(tmp_path):
    path = tmp_path / "bad_left.yaml"
    path.write_text(scenario_path("unprotected_left").read_text().replace("turn: left", "turn: right"))
    with pytest.raises(ScenarioError, match=r"bad_left.yaml: ego.turn: family 'unprotected_left' needs"):
        load_scenario(path)
    path.write_text(scenario_path("merge").read_text().replace("type: merge", "type: straight"))
    with pytest.raises(ScenarioError, match=r"road.type: family 'merge' runs on \['merge'\]"):
        load_scenario(path)


def test_custom_groups_are_checked(tmp_path):
    text = scenario_path("custom_example").read_text()
    path = tmp_path / "custom.yaml"
    path.write_text(text.replace("  - kind: pedestrian\n    behaviour: walk", "  - kind: vehicle\n    behaviour: walk"))
    with pytest.raises(ScenarioError, match=r"agents\[2\]\.kind: behaviour 'walk' is for kind 'pedestrian'"):
        load_scenario(path)
    path.write_text(text.replace("s: [90.0, 100.0]", "s: [90.0, 100.0]\n    count: 5"))
    with pytest.raises(ScenarioError, match=r"agents\[0\]\.s: range of 10 m is too short"):
        load_scenario(path)


def test_custom_example_places_its_groups():
    world = build_batch(load_scenario(scenario_path("custom_example")), [0, 1, 2])
    a = world.agents
    static = a.valid & (a.behaviour == int(Behaviour.STATIC))
    assert bool((static.sum(1) == 1).all())
    assert torch.allclose(a.xy[static][:, 0], torch.full((3,), 95.0), atol=1e-3)
    assert bool((a.path[a.valid & (a.behaviour == int(Behaviour.IDM))] == 1).all())


def test_resolve_suite_accepts_names_and_paths(tmp_path):
    assert [s.name for s in resolve_suite(scenario_path("merge"))] == ["merge"]
    assert [s.name for s in resolve_suite("merge")] == ["merge"]
    suite = tmp_path / "mine.yaml"
    (tmp_path / "local.yaml").write_text(scenario_path("ghost_road").read_text())
    suite.write_text("name: mine\ndescription: two\nscenarios: [cut_in, local.yaml]\n")
    assert [s.name for s in resolve_suite(str(suite))] == ["cut_in", "ghost_road"]
    with pytest.raises(ScenarioError, match=r"unknown suite .nope.*crowds, demo, hard"):
        resolve_suite("nope")
    suite.write_text("name: mine\ndescription: two\nscenarios: [cut_in, parade]\n")
    with pytest.raises(ScenarioError, match=r"mine.yaml: scenarios\[1\]: unknown scenario 'parade'"):
        resolve_suite(suite)


def test_docs_cover_every_family_and_key():
    docs = DOCS.read_text()
    for name, family in FAMILIES.items():
        assert f"`{name}`" in docs, name
        for section_name, field in family.sections.items():
            for key in field.fields or {}:
                assert f"`{section_name}.{key}`" in docs or f"`{key}`" in docs, (name, section_name, key)
    from sim.scenarios.sections import EGO_FIELDS, ROAD_FIELDS, SENSOR_FIELDS

    for fields in (*ROAD_FIELDS.values(), *EGO_FIELDS.values(), SENSOR_FIELDS):
        for key in fields:
            assert f"`{key}`" in docs, key


def test_more_agents_than_capacity_is_an_error_naming_the_file(tmp_path):
    doc = yaml.safe_load(scenario_path("custom_example").read_text())
    walkers = next(g for g in doc["agents"] if g["kind"] == "pedestrian")
    doc["agents"] = [copy.deepcopy({**walkers, "count": 64}) for _ in range(5)]  # shared objects dump as aliases
    path = tmp_path / "crowded.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ScenarioError, match=r"crowded\.yaml: .*up to 320 agents.*capacity of 256"):
        load_scenario(path)  # at load, before anything is allocated


@pytest.mark.parametrize("name", [n for n in packaged_scenarios() if n != "ethucy_crowd"])
def test_routes_outlast_the_episode_at_the_speed_limit(name):
    """A policy driving at the limit for the whole episode must not run off its route's end."""
    scenario = load_scenario(scenario_path(name))
    world = build_batch(scenario, [0, 1, 2])
    route = world.ego.route[:, None]
    length = torch.gather(world.map.path_length, 1, route)[:, 0]
    limit = torch.gather(world.map.path_speed_limit, 1, route)[:, 0]
    assert bool((length - world.ego.progress > limit * scenario.duration).all())
