"""The shared proposals: leaders from outcomes, IDM paths, stops, the previous plan, and driving them."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core.config import ConfigError, Timing
from sim.controller import TrackingController, centre_plan_to_rear_axle
from sim.ego import EGO_HALF_LENGTH
from sim.geometry import ego_center, world_to_local
from sim.proposals import Obstacles, PreviousPlan, ProposalConfig, Reference, generate
from sim.proposals.leader import on_route
from sim.scenarios import build_batch, load_scenario, scenario_path
from sim.sensors import render_frame
from sim.step import step
from tests.planning.planning_scenes import HORIZON, moving, road_frame, standing

TIMING = Timing()
CFG = ProposalConfig()


def obstacles(paths: list[torch.Tensor], prob: list[list[float]] | None = None, size=(4.5, 1.9)) -> Obstacles:
    """Agents following `paths` ([M, T, 2] or [T, 2]) with outcome probabilities `prob` (default 1)."""
    paths = [p if p.dim() == 3 else p[None] for p in paths]
    M = max(p.shape[0] for p in paths)
    means = torch.stack([p.expand(M, -1, -1) for p in paths])[None]  # (1, A, M, T, 2)
    heading = torch.zeros_like(means)
    heading[..., 0] = 1.0
    probs = torch.tensor(prob) if prob is not None else torch.tensor([[1.0] + [0.0] * (M - 1)] * len(paths))
    return Obstacles(means, heading, torch.zeros_like(means[..., 0]), torch.tensor(size).expand(1, len(paths), 2),
                     probs[None])  # fmt: skip


def test_kinds_and_counts_follow_the_config():
    p = generate(road_frame(), obstacles([standing(80.0, 30.0)]), None, CFG, TIMING)
    C = CFG.num_proposals
    assert p.reference.xy.shape == (1, C, HORIZON, 2) and p.driven.xy.shape == (1, C, HORIZON, 2)
    assert p.kinds == ("idm",) * (C - 3) + ("stop", "emergency", "previous")
    assert not bool(p.valid[0, -1])  # no previous plan yet
    assert bool(p.valid[0, : len(CFG.lateral_offsets) * len(CFG.speed_fractions)].all())


def test_a_sure_standing_vehicle_stops_every_path_behind_it():
    p = generate(road_frame(), obstacles([standing(25.0, 0.0)]), None, CFG, TIMING)
    nudges = len(CFG.lateral_offsets) * len(CFG.speed_fractions)
    front = p.reference.xy[0, :nudges, :, 0] + EGO_HALF_LENGTH
    assert front.max() < 25.0 - 2.25  # behind its rear
    assert p.reference.speed[0, :nudges, -1].max() < 2.0  # the slowest targets still creep up to it


def test_the_leader_is_a_quantile_of_the_outcomes_not_a_threshold():
    sure, unlikely = obstacles([standing(25.0, 0.0)], [[1.0]]), obstacles([standing(25.0, 0.0)], [[0.4]])
    frame = road_frame()
    stopped = generate(frame, sure, None, CFG, TIMING).reference.speed[0, 0, -1]
    ignored = generate(frame, unlikely, None, CFG, TIMING).reference.speed[0, 0, -1]
    cautious = generate(frame, unlikely, None, dataclasses.replace(CFG, leader_quantile=0.3), TIMING)
    assert stopped < 0.5 and ignored > 10.0 and cautious.reference.speed[0, 0, -1] < 0.5
    # Two modes of one agent: in the lane (70 %) or away in the next (30 %): a leader at q = 0.5.
    two = obstacles([torch.stack((standing(25.0, 0.0), standing(25.0, 7.0)))], [[0.7, 0.3]])
    assert generate(frame, two, None, CFG, TIMING).reference.speed[0, 0, -1] < 0.5


def test_agents_behind_or_beside_the_corridor_are_no_leaders():
    behind = obstacles([moving(-12.0, 0.0, 14.0, 0.0)])  # catching up from behind
    beside = obstacles([standing(20.0, 3.6)])  # in the next lane
    clear = generate(road_frame(), obstacles([standing(80.0, 30.0)]), None, CFG, TIMING).reference.speed
    for agents in (behind, beside):
        speed = generate(road_frame(), agents, None, CFG, TIMING).reference.speed
        assert torch.allclose(speed[0, 0], clear[0, 0])


def test_stops_brake_at_their_decelerations_along_the_ego_lane():
    p = generate(road_frame(ego_speed=10.0), obstacles([standing(80.0, 30.0)]), None, CFG, TIMING)
    stop, emergency = p.reference.speed[0, -3], p.reference.speed[0, -2]
    assert stop[0] == pytest.approx(10.0 - CFG.stop_decel * 0.4, abs=1e-4)
    assert emergency[0] == pytest.approx(10.0 - CFG.emergency_decel * 0.4, abs=1e-4)
    assert emergency[-1] == 0.0 and p.reference.xy[0, -3:-1, :, 1].abs().max() < 0.05
    # The controller's jerk limit makes the driven emergency stop longer than its reference.
    assert p.driven.xy[0, -2, -1, 0] > p.reference.xy[0, -2, -1, 0] + 0.5


def test_paths_start_from_where_the_ego_is_in_its_lane():
    frame = road_frame()
    shifted = dataclasses.replace(frame, route=frame.route + torch.tensor([0.0, -2.0]))  # ego 2 m left of it
    p = generate(shifted, obstacles([standing(80.0, 30.0)]), None, CFG, TIMING)
    nudges = len(CFG.lateral_offsets) * len(CFG.speed_fractions)
    assert p.offset[0, :nudges, 0].sub(2.0).abs().max() < 0.5  # every path starts near the ego's offset (0.4 s in)
    assert p.offset[0, -3:-1].sub(2.0).abs().max() < 1e-4  # the stops stay there
    assert p.offset[0, 0, -1].abs() < 0.05  # and the route-lane paths end on the route


def test_lane_changes_only_where_the_map_shows_a_lane():
    narrow = generate(road_frame(road_width=3.5), obstacles([standing(80.0, 30.0)]), None, CFG, TIMING)
    changes = slice(len(CFG.lateral_offsets) * len(CFG.speed_fractions), -3)
    assert not bool(narrow.valid[0, changes].any())
    off = dataclasses.replace(CFG, lane_width=0.0)
    assert generate(road_frame(), obstacles([standing(80.0, 30.0)]), None, off, TIMING).reference.xy.shape[1] == (
        off.num_proposals
    )


@pytest.mark.parametrize(
    ("scenario", "left", "right"), [("unprotected_left", False, False), ("lead_brake", True, False)]
)
def test_lane_changes_go_only_into_lanes_running_the_egos_way(scenario: str, left: bool, right: bool):
    # unprotected_left: one lane each way, the lane on the left is the oncoming one; lead_brake: two lanes
    # the ego's way, the ego in the right one.
    frame = render_frame(build_batch(load_scenario(scenario_path(scenario)), [0]))
    p = generate(frame, obstacles([standing(80.0, 30.0)]), None, CFG, TIMING)
    per_path = p.valid[0, : len(CFG.path_offsets) * len(CFG.speed_fractions)].reshape(len(CFG.path_offsets), -1)
    offered = dict(zip(CFG.path_offsets, per_path.all(-1).tolist(), strict=True))
    assert offered[CFG.lane_width] is left and offered[-CFG.lane_width] is right
    assert all(offered[o] for o in CFG.lateral_offsets)


def test_the_previous_plan_is_re_timed_in_the_new_frame():
    scenario = load_scenario(scenario_path("ghost_road")).with_overrides({"sensor.ghost_rate": 0.0,
                                                                           "sensor.raster_noise": 0.0})  # fmt: skip
    world = build_batch(scenario, [0])
    frame = render_frame(world)
    p = generate(frame, obstacles([standing(80.0, 30.0)]), None, CFG, TIMING)
    chosen = Reference(p.reference.xy[:, 0], p.reference.yaw[:, 0], p.reference.speed[:, 0])
    memory = PreviousPlan.remember(chosen, frame)
    later = world
    for _ in range(TIMING.sim_steps_per_sample):  # one plan step later
        later = step(later, TrackingController()(later.ego, centre_plan_to_rear_axle(chosen.xy, later.ego.wheelbase),
                                                 chosen.speed))  # fmt: skip
    retimed = memory.retimed(render_frame(later), TIMING)
    expected = world_to_local(memory.xy[:, 1:], render_frame(later).ego_pose[:, :2], render_frame(later).ego_pose[:, 2])
    assert torch.allclose(retimed.xy[0, 0, :-1], expected[0], atol=1e-3)
    assert retimed.speed[0, 0, :-1].sub(chosen.speed[0, 1:]).abs().max() < 1e-4


def test_driven_proposals_match_the_simulators_own_closed_loop():
    """Holding a proposal's reference in the simulator (controller + bicycle at 0.1 s, the plan re-timed every
    step) drives what the proposal's simulation predicts: closely at the simulator's step, within a few
    decimetres at the default two substeps per plan step."""
    scenario = load_scenario(scenario_path("cruising_curve")).with_overrides({"traffic.vehicles": 0,
                                                                               "traffic.cyclists": 0})  # fmt: skip
    world = build_batch(scenario, [3])
    frame = render_frame(world)
    far = obstacles([standing(200.0, 80.0)])
    for substeps, tolerance in ((4, 0.1), (2, 0.5)):
        cfg = dataclasses.replace(CFG, simulation_substeps=substeps, previous_plan=False)
        p = generate(frame, far, None, cfg, TIMING)
        for index in (2, 7, cfg.num_proposals - 2):  # an IDM target, a nudge, the emergency stop
            chosen = Reference(p.reference.xy[:, index], p.reference.yaw[:, index], p.reference.speed[:, index])
            memory, state, centres = PreviousPlan.remember(chosen, frame), world, []
            for k in range(HORIZON * TIMING.sim_steps_per_sample):
                held = memory.retimed(render_frame(state), TIMING)
                rear = centre_plan_to_rear_axle(held.xy[:, 0], state.ego.wheelbase)
                state = step(state, TrackingController()(state.ego, rear, held.speed[:, 0]))
                if (k + 1) % TIMING.sim_steps_per_sample == 0:
                    centres.append(world_to_local(ego_center(state.ego), frame.ego_pose[:, :2], frame.ego_pose[:, 2]))
            error = (torch.stack(centres, 1) - p.driven.xy[:, index]).norm(dim=-1).max()
            assert error < tolerance, (substeps, index, float(error))


def test_bad_settings_are_reported_with_the_field():
    for field, value in (("speed_fractions", (0.0, 1.0)), ("leader_quantile", 0.0), ("idm_substeps", 0),
                         ("max_decel", 1.0), ("lane_width", -1.0)):  # fmt: skip
        with pytest.raises(ConfigError, match=f"ProposalConfig.{field}"):
            ProposalConfig(**{field: value})
    assert ProposalConfig.from_dict(CFG.to_dict()) == CFG


def test_a_crossing_agent_is_waited_for_until_it_has_passed_with_a_gap():
    """A pedestrian crossing 20 m ahead, through the ego's lane from 1.6 s to 2.8 s: the IDM paths hold back
    from its crossing place until `yield_gap` after it has left (gap acceptance), not just while it is there."""
    t = (torch.arange(HORIZON) + 1.0) * 0.4
    walker = torch.stack((torch.full_like(t, 20.0), -6.0 + 2.5 * t), dim=-1)  # y from -5 to +6 m
    heading = torch.zeros(1, 1, 1, HORIZON, 2)
    heading[..., 1] = 1.0
    crossing = Obstacles(walker[None, None, None], heading, torch.ones(1, 1, 1, HORIZON), torch.tensor([[[0.6, 0.6]]]),
                         torch.ones(1, 1, 1))  # fmt: skip
    frame = road_frame(ego_speed=10.0)
    held = generate(frame, crossing, None, CFG, TIMING).reference
    followed = generate(frame, crossing, None, dataclasses.replace(CFG, yield_gap=0.0), TIMING).reference
    # Without the hold the fastest path only slows while the walker is in the lane; with it, it stays behind
    # the crossing place until 1.2 s after the walker has left it (at 2.8 s).
    front = held.xy[0, 0, :, 0] + EGO_HALF_LENGTH
    assert (front[t <= 2.8 + CFG.yield_gap - 0.4] < 20.0).all()
    assert followed.xy[0, 0, -1, 0] > held.xy[0, 0, -1, 0] + 2.0


def test_a_slow_agent_along_the_route_is_followed_not_treated_as_crossing():
    slow = obstacles([moving(15.0, 0.0, 1.5, 0.0)])
    slow = dataclasses.replace(slow, heading_trust=torch.full_like(slow.heading_trust, 0.25))  # barely moving
    route = on_route(road_frame(), slow, TIMING.sample_dt)
    assert not bool(route.crossing.any())
