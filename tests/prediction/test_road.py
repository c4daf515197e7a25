"""Forecasts of agents along the route bend with it."""

from __future__ import annotations

import math

import torch

from prediction.road import follow_route
from prediction.types import Forecast

DT, T = 0.4, 12


def arc_route(radius: float, points: int = 50, spacing: float = 2.0) -> torch.Tensor:
    """[1, R, 2] a left curve of `radius` from the origin along +x."""
    angle = torch.arange(points) * spacing / radius
    return torch.stack((radius * torch.sin(angle), radius * (1 - torch.cos(angle))), -1)[None]


def straight_forecast(starts, velocities, std: float = 0.5) -> Forecast:
    """One mode per agent moving straight from `starts` at `velocities` (ego frame)."""
    A = len(starts)
    t = (torch.arange(T) + 1.0) * DT
    pairs = zip(starts, velocities, strict=True)
    means = torch.stack([torch.tensor(p) + torch.tensor(v) * t[:, None] for p, v in pairs])
    chol = torch.diag_embed(torch.tensor([std, 2 * std])).expand(1, A, 1, T, 2, 2).clone()
    return Forecast(log_weights=torch.zeros(1, A, 1), means=means[None, :, None], chol=chol,
                    existence=torch.ones(1, A), class_probs=torch.tensor([[1.0, 0.0, 0.0]]).expand(1, A, 3).clone(),
                    valid=torch.ones(1, A, dtype=torch.bool)).validate()  # fmt: skip


def test_a_car_ahead_on_a_bend_stays_in_its_lane_and_crossing_traffic_is_untouched():
    route = arc_route(100.0)
    angle = 0.2  # on the curve 20 m ahead, heading along it; the predictor extrapolates that heading straight
    start = (100 * math.sin(angle), 100 * (1 - math.cos(angle)))
    # The second agent crosses the road 25 m ahead, within reach of the route: its motion is not along it.
    fc = straight_forecast([start, (25.0, -6.0)], [(10.0 * math.cos(angle), 10.0 * math.sin(angle)), (0.0, 10.0)])
    bent = follow_route(fc, route, DT).validate()
    end = bent.means[0, 0, 0, -1]
    radius = (end - torch.tensor([0.0, 100.0])).norm()
    assert abs(float(radius) - 100.0) < 2.5  # on the curve, about where it started across it
    assert torch.allclose(bent.means[0, 1], fc.means[0, 1])  # crossing: unchanged
    assert torch.allclose(bent.means[0, 0, 0, 0], fc.means[0, 0, 0, 0], atol=0.05)  # the first step stays


def test_on_a_straight_route_nothing_moves_and_gradients_pass():
    route = torch.stack((torch.arange(50) * 2.0, torch.zeros(50)), -1)[None]
    fc = straight_forecast([(10.0, 0.5), (40.0, 3.5)], [(8.0, 0.3), (-12.0, 0.0)])
    means = fc.means.clone().requires_grad_(True)
    bent = follow_route(Forecast(**{**fc.__dict__, "means": means}), route, DT)
    assert torch.allclose(bent.means, fc.means, atol=1e-3) and torch.allclose(bent.chol, fc.chol, atol=1e-4)
    bent.means.sum().backward()
    assert torch.isfinite(means.grad).all()
