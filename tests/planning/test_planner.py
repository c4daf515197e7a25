"""The planner: route following, avoidance, risk sensitivity, gradients and input errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from planning.lattice import initial_parameters, rollout

from planning.config import PlannerConfig
from planning.planner import Planner, nearest_agents
from prediction.types import Forecast
from tests.planning.planning_scenes import HORIZON, forecast, moving, road_frame, standing


def plan_for(fc, frame=None, sigma=0.0, planner=None):
    planner = (planner or Planner()).eval()
    return planner(fc, frame if frame is not None else road_frame(), torch.tensor([sigma])).validate()


def test_no_agents_follows_the_route_at_the_speed_limit():
    plan = plan_for(Forecast.empty(1, 8, 2, HORIZON))
    assert plan.trajectory.shape == (1, HORIZON, 3)
    assert (plan.trajectory[0, :, 0].diff() > 0).all()  # straight ahead along the route
    assert plan.trajectory[0, :, 1].abs().max() < 0.2 and plan.trajectory[0, :, 2].abs().max() < 0.05
    assert plan.speed[0, -1] == pytest.approx(15.0, abs=1.0)  # the speed limit
    assert torch.allclose(plan.candidate_weights.sum(-1), torch.ones(1))


def test_stops_behind_a_standing_vehicle():
    plan = plan_for(forecast([standing(25.0, 0.0)]))
    ego_front = plan.trajectory[0, :, 0] + 2.4
    assert ego_front.max() < 25.0 - 2.25  # the vehicle's rear
    assert plan.speed[0, -1] < 2.0


def test_ignores_an_agent_that_cannot_exist_and_a_vehicle_in_the_next_lane():
    clear = plan_for(Forecast.empty(1, 8, 2, HORIZON))
    absent = plan_for(forecast([standing(25.0, 0.0)], existence=0.0))
    assert torch.allclose(absent.trajectory, clear.trajectory, atol=1e-4)
    beside = plan_for(forecast([moving(5.0, 3.5, 14.0, 0.0)], std=0.2))
    assert beside.speed[0, -1] > 12.0


def test_risk_aversion_slows_down_for_an_uncertain_crossing():
    # An agent that crosses the lane ahead in one of its two modes (15 %) and waits in the other.
    crossing = moving(30.0, 6.0, 0.0, -2.5)
    waiting = standing(30.0, 6.0)
    fc = forecast([torch.stack((crossing, waiting))], mode_weights=(0.15, 0.85), std=0.5)
    sigmas = (-0.5, 0.0, 1.0, 5.0)
    refined = [plan_for(fc, sigma=s).trajectory[0, -1, 0].item() for s in sigmas]
    assert refined[0] > refined[-1] + 10.0  # risk-seeking drives on, strongly risk-averse slows down
    # On the fixed lattice every candidate's risk grows with sigma and the progress chosen falls;
    # refinement is a local search from each lattice point, so it is only nearly monotone.
    lattice = Planner(PlannerConfig(refine_steps=0))
    plans = [plan_for(fc, sigma=s, planner=lattice) for s in sigmas]
    progress = [p.trajectory[0, -1, 0].item() for p in plans]
    assert progress == sorted(progress, reverse=True)
    risks = torch.stack([p.candidate_risk[0] for p in plans])
    assert (risks.diff(dim=0) >= -1e-5).all()
    assert all(later <= earlier + 0.5 for earlier, later in zip(refined, refined[1:], strict=False))


def test_refinement_never_raises_a_candidates_risk():
    fc = forecast([standing(25.0, 0.3), moving(40.0, -3.0, -5.0, 0.0)])
    frame = road_frame()
    for steps in (0, 1, 3):
        planner = Planner(PlannerConfig(refine_steps=steps)).eval()
        risk = planner(fc, frame, torch.tensor([1.0])).candidate_risk
        if steps == 0:
            lattice = risk
        assert (risk <= lattice + 1e-5).all()


def test_training_mode_plans_the_softmin_average():
    fc = forecast([standing(25.0, 0.0)])
    planner = Planner().train()
    plan = planner(fc, road_frame(), torch.tensor([1.0]))
    expected = (plan.candidates * plan.candidate_weights[:, :, None, None]).sum(1)
    assert torch.allclose(plan.trajectory, expected, atol=1e-5)


def test_gradients_reach_the_forecast_and_existence():
    fc = forecast([standing(20.0, 0.5)], existence=0.7)
    means = fc.means.clone().requires_grad_(True)
    existence = fc.existence.clone().requires_grad_(True)
    fc = dataclasses.replace(fc, means=means, existence=existence)
    plan = Planner().train()(fc, road_frame(), torch.tensor([1.0]))
    plan.trajectory[..., 0].sum().backward()
    assert means.grad.abs().sum() > 0 and existence.grad.abs().sum() > 0
    assert torch.isfinite(means.grad).all()


def test_samples_from_caller_noise_replace_the_modes_deterministically():
    fc = forecast([standing(25.0, 0.0)])
    noise = fc.sample_noise(16, torch.Generator().manual_seed(0))
    planner = Planner().eval()
    a = planner(fc, road_frame(), torch.tensor([1.0]), noise=noise)
    b = planner(fc, road_frame(), torch.tensor([1.0]), noise=noise)
    assert torch.equal(a.trajectory, b.trajectory)
    assert a.speed[0, -1] < 2.0  # the samples stand where the modes stand


def test_nearest_agents_keeps_the_relevant_ones():
    frame = road_frame()
    fc = forecast([standing(80.0, 40.0), standing(25.0, 0.0), standing(-60.0, 30.0)])
    planner = Planner()
    candidates = rollout(frame, initial_parameters(frame, planner.cfg), planner.cfg, planner.timing)
    chosen = nearest_agents(planner.agent_futures(fc, None, None), candidates, 1)
    assert torch.allclose(chosen.means[0, 0, 0, 0], torch.tensor([25.0, 0.0]))


@pytest.mark.parametrize("sigma", [float("nan"), float("inf")])
def test_non_finite_sigma_gets_a_clear_error(sigma):
    with pytest.raises(ValueError, match="sigma: expected finite"):
        plan_for(Forecast.empty(1, 4, 2, HORIZON), sigma=sigma)


def test_malformed_forecasts_get_clear_errors():
    with pytest.raises(ValueError, match="forecast.means: expected 12 future steps"):
        plan_for(Forecast.empty(1, 4, 2, HORIZON - 2))
    with pytest.raises(ValueError, match="forecast: expected batch 1"):
        plan_for(Forecast.empty(2, 4, 2, HORIZON))
    bad = Forecast.empty(1, 4, 2, HORIZON)
    bad = dataclasses.replace(bad, means=bad.means.clone().fill_(float("nan")))
    with pytest.raises(ValueError, match="Forecast.means"):
        plan_for(bad)
