"""Rule-based baselines: IDM follower and PDM-Closed-style planner."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from sim.policies import Observation, make_policy
from sim.policies.pdm import PDMClosed
from sim.runner import observe
from sim.sensors import ground_truth, render_frame
from tests.sim.sensor_worlds import Box, sensor_world, straight_road

YAW = 0.3
CENTRE = (10.0, -5.0)


def world_with(boxes, ego_speed=10.0):
    world = sensor_world([boxes], ego_centre=CENTRE, ego_yaw=YAW)
    start = (CENTRE[0] - 30 * math.cos(YAW), CENTRE[1] - 30 * math.sin(YAW))
    world = straight_road(world, start=start, heading=YAW, length=200.0, road_width=7.0, speed_limit=15.0)
    ego = dataclasses.replace(world.ego, speed=torch.full((1,), ego_speed), progress=torch.full((1,), 30.0))
    return dataclasses.replace(world, ego=ego)


@pytest.mark.parametrize("name", ["idm-gt", "pdm-gt"])
def test_clear_road_accelerates_along_route(name):
    policy = make_policy(name)
    world = world_with([])
    out, _ = policy.act(policy.initial_state(1, "cpu"), observe(world, policy, policy_raster(policy)))
    assert out.trajectory.shape == (1, 12, 2)
    assert (out.trajectory[0, :, 0].diff() > 0).all()
    assert out.trajectory[0, :, 1].abs().max() < 0.3
    assert out.speeds[0, -1] > 10.0


@pytest.mark.parametrize("name", ["idm-gt", "pdm-gt"])
def test_stops_behind_stopped_vehicle(name):
    policy = make_policy(name)
    world = world_with([Box(x=25.0, y=0.0)])
    out, _ = policy.act(None, observe(world, policy, policy_raster(policy)))
    rear_of_leader = 25.0 - 4.5 / 2
    ego_front = out.trajectory[0, :, 0] + 2.4
    assert ego_front.max() < rear_of_leader
    assert out.speeds[0, -1] < 1.0


def test_thresholded_policy_ignores_low_scores_and_obeys_high_ones():
    world = world_with([Box(x=20.0, y=0.0)])
    frame = render_frame(world)
    gt = ground_truth(world)
    policy = make_policy("pdm")
    low = Observation(frame=frame, detections=dataclasses.replace(gt, score=torch.full_like(gt.score, 0.4)))
    high = Observation(frame=frame, detections=dataclasses.replace(gt, score=torch.full_like(gt.score, 0.6)))
    out_low, _ = policy.act(None, low)
    out_high, _ = policy.act(None, high)
    assert out_low.trajectory[0, -1, 0] > 25.0
    assert out_high.trajectory[0, -1, 0] < 20.0


def test_pdm_exposes_scored_candidates():
    policy = make_policy("pdm-gt")
    out, _ = policy.act(None, observe(world_with([]), policy, policy_raster(policy)))
    candidates, weights = out.overlay.candidates, out.overlay.candidate_weights
    assert candidates.shape[:2] == weights.shape
    assert ((weights >= 0) & (weights <= 1)).all()
    # The chosen plan is the first best candidate, offset 0 at the highest target speed; the overlay shows
    # each proposal as driven, the output is its reference, which the driven one follows within a metre.
    assert int(weights[0].argmax()) == 0
    assert (out.trajectory - candidates[:, 0]).norm(dim=-1).max() < 1.0


def test_pdm_keeps_its_previous_plan_as_state():
    policy = make_policy("pdm-gt")
    world = world_with([Box(x=40.0, y=0.0, speed=8.0)])
    obs = observe(world, policy, policy_raster(policy))
    out, state = policy.act(policy.initial_state(1, "cpu"), obs)
    assert bool(state.valid.all()) and state.xy.shape == (1, 12, 2)
    assert out.overlay.candidate_weights[0, -1] == 0.0  # no previous plan yet: that proposal scores -2
    again, _ = policy.act(state, obs)  # the same frame: the previous plan is offered, safe, driven as before
    assert again.overlay.candidate_weights[0, -1] > 0.5
    assert torch.allclose(again.overlay.candidates[0, -1], out.overlay.candidates[0, 0], atol=1e-3)


def test_missing_input_is_a_clear_error():
    policy = make_policy("pdm")
    frame = render_frame(world_with([]))
    with pytest.raises(ValueError, match="policy input missing"):
        policy.act(None, Observation(frame=frame))


def policy_raster(policy):
    return policy.raster if isinstance(policy, PDMClosed) else PDMClosed().raster
