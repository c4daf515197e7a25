"""Collision probability of discs under Gaussian positions, against Monte Carlo."""

from __future__ import annotations

import math

import pytest
import torch

from planning.collision import (
    EGO_HALF_LENGTH,
    EGO_HALF_WIDTH,
    SQUARE_HALF_SIDE,
    disc_probability,
    ego_circles,
    equal_area_radius,
    first_hit_probability,
)

SAMPLES = 200_000


def monte_carlo(centre, mean, cov, inside, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(SAMPLES, 2, generator=g, dtype=torch.float64)
    x = torch.tensor(mean, dtype=torch.float64) + z @ torch.linalg.cholesky(torch.tensor(cov, dtype=torch.float64)).T
    return inside(x - torch.tensor(centre, dtype=torch.float64)).double().mean().item()


def closed_form(centre, mean, cov, radius):
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return disc_probability(t(centre), t(mean), t(cov), t(radius)).item()


@pytest.mark.parametrize(
    "mean, cov",
    [
        ((3.0, 0.0), ((1.0, 0.0), (0.0, 0.25))),  # axes aligned with the line of centres
        ((0.0, 2.5), ((0.3, 0.0), (0.0, 2.0))),
        ((1.0, 0.0), ((0.5, 0.0), (0.0, 0.5))),
    ],
)
def test_exact_for_the_equal_area_square_when_axes_align(mean, cov):
    radius = 1.5
    half = SQUARE_HALF_SIDE * radius
    offset = torch.tensor(mean, dtype=torch.float64)
    along = -offset / offset.norm()
    across = torch.stack((-along[1], along[0]))

    def in_square(rel):
        return ((rel @ along).abs() <= half) & ((rel @ across).abs() <= half)

    expected = monte_carlo((0.0, 0.0), mean, cov, in_square)
    assert closed_form((0.0, 0.0), mean, cov, radius) == pytest.approx(expected, abs=4e-3)


@pytest.mark.parametrize(
    "mean, cov",
    [
        ((0.0, 0.0), ((1.0, 0.0), (0.0, 1.0))),
        ((2.0, 1.0), ((1.5, 0.4), (0.4, 0.6))),
        ((4.0, -1.0), ((4.0, -1.0), (-1.0, 2.0))),
        ((1.0, 1.0), ((0.05, 0.0), (0.0, 0.05))),
        ((6.0, 0.0), ((0.2, 0.0), (0.0, 0.2))),
    ],
)
def test_close_to_the_disc_by_monte_carlo(mean, cov):
    radius = 2.0
    expected = monte_carlo((0.0, 0.0), mean, cov, lambda rel: rel.norm(dim=-1) <= radius)
    assert closed_form((0.0, 0.0), mean, cov, radius) == pytest.approx(expected, abs=0.06)


def test_tends_to_an_indicator_without_gaussian_tails():
    tight = ((1e-4, 0.0), (0.0, 1e-4))
    assert closed_form((0.0, 0.0), (0.5, 0.5), tight, 2.0) == pytest.approx(1.0)
    # A car in the next lane (3.5 m across) is not a collision risk once the position is known.
    assert closed_form((0.0, 0.0), (0.0, 3.5), tight, 2.8) < 1e-6


def test_gradients_reach_mean_and_covariance():
    mean = torch.tensor([2.0, 0.5], dtype=torch.float64, requires_grad=True)
    cov = torch.tensor([[1.0, 0.2], [0.2, 0.5]], dtype=torch.float64, requires_grad=True)
    p = disc_probability(torch.zeros(2, dtype=torch.float64), mean, cov, torch.tensor(1.5, dtype=torch.float64))
    p.backward()
    assert mean.grad.norm() > 0 and cov.grad.norm() > 0
    assert mean.grad[0] < 0  # moving the agent away lowers the probability


def test_first_hit_probability_matches_independent_steps():
    p = torch.tensor([0.5, 0.2, 0.0, 1.0])
    first = first_hit_probability(p)
    assert torch.allclose(first, torch.tensor([0.5, 0.5 * 0.2, 0.0, 0.5 * 0.8 * 1.0]))
    assert first.sum() == pytest.approx(1.0)  # a sure hit at the end: all mass accounted for


def test_ego_discs_cover_the_ego_box():
    offsets, radius = ego_circles(torch.float64)
    corners = torch.tensor(
        [[EGO_HALF_LENGTH, EGO_HALF_WIDTH], [-EGO_HALF_LENGTH, -EGO_HALF_WIDTH]], dtype=torch.float64
    )
    centres = torch.stack((offsets, torch.zeros_like(offsets)), -1)
    assert ((corners[:, None] - centres[None]).norm(dim=-1).amin(-1) <= radius + 1e-9).all()
    assert equal_area_radius(torch.tensor([4.0, math.pi])).item() == pytest.approx(2.0)
