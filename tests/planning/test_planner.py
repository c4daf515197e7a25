"""The planner: route following, avoidance, risk sensitivity, consistency, gradients and input errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from planning.agents import agent_futures, nearest_agents
from planning.config import PlannerConfig
from planning.planner import Planner, remember
from prediction.types import Forecast
from sim.proposals import PreviousPlan, Reference, generate
from tests.planning.planning_scenes import HORIZON, forecast, moving, road_frame, standing


def plan_for(fc, frame=None, sigma=0.0, planner=None, previous=None):
    planner = (planner or Planner()).eval()
    frame = frame if frame is not None else road_frame()
    return planner(fc, frame, torch.tensor([sigma]), previous=previous).validate()


def test_no_agents_follows_the_route_towards_the_speed_limit():
    plan = plan_for(Forecast.empty(1, 8, 2, HORIZON))
    assert plan.trajectory.shape == (1, HORIZON, 3)
    assert plan.candidates.shape[:2] == plan.candidate_risk.shape == (1, PlannerConfig().num_candidates)
    assert (plan.trajectory[0, :, 0].diff() > 0).all()  # straight ahead along the route
    assert plan.trajectory[0, :, 1].abs().max() < 0.2 and plan.trajectory[0, :, 2].abs().max() < 0.05
    assert 11.0 < plan.speed[0, -1] <= 15.0  # accelerating from 10 m/s towards the 15 m/s limit (IDM)
    assert torch.allclose(plan.candidate_weights.sum(-1), torch.ones(1))


def test_stops_behind_a_standing_vehicle():
    plan = plan_for(forecast([standing(25.0, 0.0)]))
    ego_front = plan.trajectory[0, :, 0] + 2.4
    assert ego_front.max() < 25.0 - 2.25  # the vehicle's rear
    assert plan.speed[0, -1] < 1.0


def test_follows_a_slower_vehicle_at_a_headway_instead_of_stopping():
    plan = plan_for(forecast([moving(30.0, 0.0, 8.0, 0.0)], std=0.2))
    gap = 30.0 + 8.0 * 0.4 * torch.arange(1, HORIZON + 1) - plan.trajectory[0, :, 0] - 2.4 - 2.25
    assert gap.min() > 8.0  # never closer than about a second of travel
    assert 6.0 < plan.speed[0, -1] < 10.0  # settles near the leader's speed


def test_ignores_an_agent_that_cannot_exist_and_a_vehicle_in_the_next_lane():
    clear = plan_for(Forecast.empty(1, 8, 2, HORIZON))
    absent = plan_for(forecast([standing(25.0, 0.0)], existence=0.0))
    assert torch.allclose(absent.trajectory, clear.trajectory, atol=1e-4)
    beside = plan_for(forecast([moving(5.0, 3.5, 14.0, 0.0)], std=0.2))
    assert torch.allclose(beside.speed, clear.speed, atol=0.1)


def test_risk_aversion_slows_down_for_an_uncertain_crossing():
    # An agent that crosses the lane ahead in one of its two modes (15 %) and waits in the other.
    crossing = moving(30.0, 6.0, 0.0, -2.5)
    waiting = standing(30.0, 6.0)
    fc = forecast([torch.stack((crossing, waiting))], mode_weights=(0.15, 0.85), std=0.5)
    sigmas = (-0.5, 0.0, 1.0, 5.0)
    plans = [plan_for(fc, sigma=s) for s in sigmas]
    progress = [p.trajectory[0, -1, 0].item() for p in plans]
    assert progress[0] > progress[-1] + 5.0  # risk-seeking drives on, strongly risk-averse holds back
    assert progress == sorted(progress, reverse=True)
    risks = torch.stack([p.candidate_risk[0] for p in plans])
    assert (risks.diff(dim=0) >= -1e-5).all()  # every proposal's entropic risk grows with sigma


def test_the_previous_plan_is_offered_again_and_switching_away_from_it_costs_a_little():
    fc, frame, sigma = forecast([moving(30.0, 0.0, 8.0, 0.0)], std=0.2), road_frame(), torch.tensor([1.0])
    planner = Planner().eval()
    cfg = planner.cfg.proposals
    stop, previous = cfg.num_proposals - 3, cfg.num_proposals - 1
    agents = agent_futures(fc, torch.tensor([4.5, 1.9]).expand(1, 8, 2), None, 0.3, 0.4)
    ref = generate(frame, agents.obstacles(), None, cfg).reference
    held = PreviousPlan.remember(Reference(ref.xy[:, stop], ref.yaw[:, stop], ref.speed[:, stop]), frame)
    without = planner(fc, frame, sigma)
    with_stop = planner(fc, frame, sigma, previous=held)
    assert without.candidate_risk[0, previous] > 10.0  # offered only when there is one
    # Offered unchanged at the same frame: driven exactly as the stop is.
    assert torch.allclose(with_stop.candidates[0, previous], with_stop.candidates[0, stop], atol=1e-3)
    # Every other proposal pays for leaving it, never more than the consistency weight; the stop pays nothing.
    extra = (with_stop.candidate_risk - without.candidate_risk)[0, :previous]
    nudges = len(cfg.lateral_offsets) * len(cfg.speed_fractions)
    assert (extra[:nudges] > 1e-3).all() and (extra[:nudges] <= planner.cfg.weights.consistency + 1e-5).all()
    assert abs(float(extra[stop])) < 1e-5


def test_training_mode_plans_the_softmin_average_of_the_references():
    fc, frame = forecast([standing(25.0, 0.0)]), road_frame()
    planner = Planner().train()
    plan = planner(fc, frame, torch.tensor([1.0]))
    agents = agent_futures(fc, torch.tensor([4.5, 1.9]).expand(1, 8, 2), None, 0.3, 0.4)
    ref = generate(frame, agents.obstacles(), None, planner.cfg.proposals).reference
    poses = torch.cat((ref.xy, ref.yaw[..., None]), dim=-1)
    expected = (poses * plan.candidate_weights[:, :, None, None]).sum(1)
    assert torch.allclose(plan.trajectory, expected, atol=1e-3)


def test_gradients_reach_the_forecast_and_existence():
    fc = forecast([standing(20.0, 0.5)], existence=0.7)
    means = fc.means.clone().requires_grad_(True)
    existence = fc.existence.clone().requires_grad_(True)
    fc = dataclasses.replace(fc, means=means, existence=existence)
    plan = Planner().train()(fc, road_frame(), torch.tensor([1.0]))
    plan.trajectory[..., 0].sum().backward()
    assert means.grad.abs().sum() > 0 and existence.grad.abs().sum() > 0
    assert torch.isfinite(means.grad).all() and torch.isfinite(existence.grad).all()


def test_samples_from_caller_noise_replace_the_modes_deterministically():
    fc = forecast([standing(25.0, 0.0)])
    noise = fc.sample_noise(16, torch.Generator().manual_seed(0))
    planner = Planner().eval()
    a = planner(fc, road_frame(), torch.tensor([1.0]), noise=noise)
    b = planner(fc, road_frame(), torch.tensor([1.0]), noise=noise)
    assert torch.equal(a.trajectory, b.trajectory)
    assert a.speed[0, -1] < 1.0  # the samples stand where the modes stand


def test_nearest_agents_keeps_the_relevant_ones():
    frame = road_frame()
    fc = forecast([standing(80.0, 40.0), standing(25.0, 0.0), standing(-60.0, 30.0)])
    agents = agent_futures(fc, torch.tensor([4.5, 1.9]).expand(1, 8, 2), None, 0.3, 0.4)
    driven = generate(frame, agents.obstacles(), None, PlannerConfig().proposals).driven
    chosen = nearest_agents(agents, driven.xy, 1)
    assert torch.allclose(chosen.means[0, 0, 0, 0], torch.tensor([25.0, 0.0]))


@pytest.mark.parametrize(
    "make",
    [
        lambda: forecast([standing(25.0, 0.0), moving(40.0, 0.0, -10.0, 0.0)], existence=0.0),  # nothing exists
        lambda: forecast([standing(25.0, 0.0)], std=1e3),  # huge covariances
        lambda: forecast([standing(0.0, 0.0), standing(1.0, 0.5), moving(-2.0, 0.0, 5.0, 0.0)]),  # on the ego
        lambda: forecast([torch.full((HORIZON, 2), 1e4)]),  # far off the raster and the route
    ],
)
def test_adversarial_forecasts_never_give_non_finite_plans(make):
    fc = make()
    for train in (False, True):
        planner = Planner().train(train)
        for sigma in (-5.0, 0.0, 1.0, 50.0):
            plan = planner(fc, road_frame(), torch.tensor([sigma])).validate()
            assert torch.isfinite(plan.trajectory).all() and torch.isfinite(plan.candidate_risk).all()


@pytest.mark.parametrize("sigma", [float("nan"), float("inf")])
def test_non_finite_sigma_gets_a_clear_error(sigma):
    with pytest.raises(ValueError, match="sigma: expected finite"):
        plan_for(Forecast.empty(1, 4, 2, HORIZON), sigma=sigma)


def test_malformed_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="forecast.means: expected 12 future steps"):
        plan_for(Forecast.empty(1, 4, 2, HORIZON - 2))
    with pytest.raises(ValueError, match="forecast: expected batch 1"):
        plan_for(Forecast.empty(2, 4, 2, HORIZON))
    bad = Forecast.empty(1, 4, 2, HORIZON)
    bad = dataclasses.replace(bad, means=bad.means.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="Forecast.means"):
        plan_for(bad)
    frame = road_frame()
    previous = remember(plan_for(Forecast.empty(1, 4, 2, HORIZON)), frame)
    previous = dataclasses.replace(previous, speed=previous.speed.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="PreviousPlan.speed"):
        plan_for(Forecast.empty(1, 4, 2, HORIZON), frame, previous=previous)
