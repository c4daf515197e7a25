"""The drivable-area term weighs what the metric fails an episode for: any corner off the road at any step."""

from __future__ import annotations

import types

import torch

from planning.config import PlannerConfig
from planning.costs import drivable_cost
from sim.config import RasterConfig
from sim.proposals import Driven
from tests.planning.planning_scenes import road_frame

STEPS = 16


def drive(lateral: list[float]) -> types.SimpleNamespace:
    """One proposal along +x at 10 m/s, 0.5 s steps, at the lateral positions `lateral` (one per step)."""
    x = (torch.arange(STEPS) + 1.0) * 5.0
    xy = torch.stack((x, torch.tensor(lateral)), dim=-1)[None, None]
    zeros = torch.zeros(1, 1, STEPS)
    driven = Driven(xy=xy, yaw=zeros, speed=zeros + 10.0, accel=zeros, jerk=zeros, yaw_rate=zeros)
    return types.SimpleNamespace(driven=driven)  # the term reads the driven poses only


def test_one_corner_off_the_road_for_one_step_costs_almost_its_full_weight():
    frame = road_frame(road_width=7.0)  # drivable within 3.5 m of the route
    cfg = PlannerConfig()
    on_road = float(drivable_cost(drive([0.0] * STEPS), frame, RasterConfig(), cfg))
    clipped = [0.0] * STEPS
    clipped[2] = 3.2  # the left corners 4.2 m out, at the third step only
    off_once = float(drivable_cost(drive(clipped), frame, RasterConfig(), cfg))
    assert on_road < 1e-3
    assert off_once > 0.8 * cfg.weights.drivable  # a mean over the 64 corner-steps would give 1/32 of it
    late = [0.0] * STEPS
    late[12] = 3.2
    assert float(drivable_cost(drive(late), frame, RasterConfig(), cfg)) < off_once  # replanning may still fix it
