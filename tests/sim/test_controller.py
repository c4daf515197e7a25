"""The tracking controller in closed loop with the ego's bicycle."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from core.config import ConfigError, Timing
from core.contracts import ContractError
from sim.controller import TrackingController
from sim.geometry import world_to_local
from sim.step import EgoAction, step
from tests.sim.worlds import park_ego, road_world, set_ego, straight

TIMING = Timing()
HORIZON = TIMING.horizon_steps


def line_reference(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Points and the signed offset function of the line y = 0 along x."""
    return torch.stack((s, torch.zeros_like(s)), dim=-1)


def arc_reference(radius: float):
    def points(s: torch.Tensor) -> torch.Tensor:
        a = s / radius
        return torch.stack((radius * torch.sin(a), radius - radius * torch.cos(a)), dim=-1)

    return points


def plan_ahead(world, points, speed: float, arc_length_now: torch.Tensor) -> torch.Tensor:
    """The reference sampled at the planned speed, [B, T, 2] in the ego frame."""
    ahead = arc_length_now.unsqueeze(1) + speed * TIMING.sample_dt * torch.arange(1, HORIZON + 1)  # (B, T)
    return world_to_local(points(ahead), world.ego.xy, world.ego.yaw)


def drive(world, points, offset, arc_length, speed: float, seconds: float = 10.0):
    """Closed loop for `seconds`; returns the largest lateral error after the first 2 s."""
    controller = TrackingController()
    worst = 0.0
    steps = round(seconds / world.dt)
    for k in range(steps):
        plan = plan_ahead(world, points, speed, arc_length(world.ego.xy))
        world = step(world, controller(world.ego, plan))
        if k * world.dt >= 2.0:
            worst = max(worst, float(offset(world.ego.xy).abs().max()))
    return world, worst


def test_tracks_a_straight_line_from_an_offset_start():
    world = set_ego(park_ego(road_world([straight(16, 100.0)])), xy=(0.0, 0.8), yaw=0.05, speed=10.0)
    world, worst = drive(world, line_reference, lambda xy: xy[:, 1], lambda xy: xy[:, 0], 10.0)
    assert worst < 0.1
    assert float(world.ego.speed[0]) == pytest.approx(10.0, abs=0.1)


def test_tracks_a_40_m_arc_at_10_m_per_s():
    radius = 40.0
    world = set_ego(park_ego(road_world([straight(16, 100.0)])), speed=10.0)

    def offset(xy):
        return radius - (xy - torch.tensor([0.0, radius])).norm(dim=-1)  # > 0 inside the circle

    def arc_length(xy):
        rel = xy - torch.tensor([0.0, radius])
        return radius * torch.atan2(rel[:, 0], -rel[:, 1])

    world, worst = drive(world, arc_reference(radius), offset, arc_length, 10.0)
    assert worst < 0.15
    assert float(world.ego.speed[0]) == pytest.approx(10.0, abs=0.1)
    travelled = float(arc_length(world.ego.xy)[0])
    assert travelled == pytest.approx(100.0, abs=2.0)  # 10 s at 10 m/s, around the arc


def test_stopping_trajectory_brakes_without_nan():
    world = set_ego(park_ego(road_world([straight(16, 100.0)])), speed=5.0)
    controller = TrackingController()
    plan = torch.zeros(1, HORIZON, 2)
    for _ in range(60):
        act = controller(world.ego, plan)
        assert bool(torch.isfinite(act.accel).all()) and bool(torch.isfinite(act.steer).all())
        world = step(world, act)
    assert float(world.ego.speed[0]) == 0.0
    assert float(act.steer[0]) == 0.0


def test_given_speeds_set_the_target_and_commands_respect_limits():
    world = set_ego(park_ego(road_world([straight(16, 100.0)])), speed=10.0)
    controller = TrackingController()
    plan = torch.stack((torch.arange(1, HORIZON + 1) * 4.0, torch.zeros(HORIZON)), dim=-1).unsqueeze(0)
    faster = controller(world.ego, plan, speeds=torch.full((1, HORIZON), 20.0))
    # From a steady state the command may rise by at most max_jerk * dt in one step.
    rate = controller.max_jerk * controller.timing.sim_dt
    assert float(faster.accel[0]) == pytest.approx(rate)
    accelerating = dataclasses.replace(world.ego, accel=torch.full((1,), 3.5))
    assert float(controller(accelerating, plan, speeds=torch.full((1, HORIZON), 20.0)).accel[0]) == pytest.approx(
        controller.max_accel
    )
    hard_left = torch.stack((torch.zeros(HORIZON), torch.arange(1, HORIZON + 1) * 4.0), dim=-1).unsqueeze(0)
    act = controller(world.ego, hard_left)
    assert float(act.steer[0]) == pytest.approx(controller.max_steer)
    EgoAction.check(act, 1)


def test_bad_inputs_and_settings_are_reported():
    world = set_ego(park_ego(road_world([straight(16, 100.0)])), speed=10.0)
    controller = TrackingController()
    with pytest.raises(ContractError, match=r"trajectory must have shape \[B=1, T>=1, 2\]"):
        controller(world.ego, torch.zeros(1, HORIZON, 3))
    bad = torch.zeros(1, HORIZON, 2)
    bad[0, 3, 1] = math.nan
    with pytest.raises(ContractError, match="trajectory must be finite, episode 0"):
        controller(world.ego, bad)
    with pytest.raises(ConfigError, match="TrackingController.max_steer"):
        TrackingController(max_steer=1.0)
