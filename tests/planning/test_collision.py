"""Collision probability of boxes under Gaussian positions, against Monte Carlo."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from planning.collision import (
    box_probability,
    first_hit_probability,
    minkowski_half_sizes,
    motion_heading,
)
from sim.ego import EGO_HALF_LENGTH, EGO_HALF_WIDTH

SAMPLES = 200_000
T64 = torch.float64


def t(value) -> torch.Tensor:
    return torch.tensor(value, dtype=T64)


def monte_carlo(offset, cov, heading, half_along, half_across, seed=0) -> float:
    g = torch.Generator().manual_seed(seed)
    x = t(offset) + torch.randn(SAMPLES, 2, generator=g, dtype=T64) @ torch.linalg.cholesky(t(cov)).T
    h = t(heading)
    n = torch.stack((-h[1], h[0]))
    return (((x @ h).abs() <= half_along) & ((x @ n).abs() <= half_across)).double().mean().item()


def closed_form(offset, cov, heading, half_along, half_across) -> float:
    return box_probability(t(offset), t(cov), t(heading), t(half_along), t(half_across)).item()


@pytest.mark.parametrize(
    "offset, cov, heading",
    [
        ((3.0, 0.5), ((1.0, 0.0), (0.0, 0.25)), (1.0, 0.0)),  # covariance aligned with the box
        ((0.0, 2.5), ((0.3, 0.0), (0.0, 2.0)), (1.0, 0.0)),
        ((2.0, 2.0), ((0.5, 0.5), (0.5, 1.5)), (math.sqrt(0.5), math.sqrt(0.5))),  # aligned, rotated axes
    ],
)
def test_exact_when_the_covariance_is_aligned_with_the_box(offset, cov, heading):
    h = t(heading)
    # Build the covariance in the box's axes so it is aligned by construction.
    rot = torch.stack((h, torch.stack((-h[1], h[0]))), dim=1)
    aligned = rot @ torch.diag(torch.diagonal(t(cov))) @ rot.T
    expected = monte_carlo(offset, aligned.tolist(), heading, 3.0, 1.5)
    assert closed_form(offset, aligned.tolist(), heading, 3.0, 1.5) == pytest.approx(expected, abs=4e-3)


@pytest.mark.parametrize("rho, tolerance", [(0.0, 0.01), (0.3, 0.05), (0.5, 0.08)])
def test_error_for_correlated_covariances_grows_with_the_correlation(rho, tolerance):
    # Dropping the correlation in the box's axes is the approximation; measured worst errors over
    # this grid are about 0.002, 0.04 and 0.07 (and 0.10 at rho = 0.7).
    worst = 0.0
    for ox, oy, sx, sy in itertools.product((0.0, 2.0, 4.0), (0.0, 1.5), (0.5, 2.0), (0.5, 1.0)):
        cov = [[sx * sx, rho * sx * sy], [rho * sx * sy, sy * sy]]
        expected = monte_carlo((ox, oy), cov, (1.0, 0.0), 3.0, 1.5, seed=1)
        worst = max(worst, abs(closed_form((ox, oy), cov, (1.0, 0.0), 3.0, 1.5) - expected))
    assert worst <= tolerance


def test_tends_to_the_boxes_indicator_without_gaussian_tails():
    tight = ((1e-4, 0.0), (0.0, 1e-4))
    assert closed_form((1.0, 0.5), tight, (1.0, 0.0), 4.6, 2.0) == pytest.approx(1.0)
    # A car parked beside the lane (centres 2.6 m apart across, boxes 2.0 m and 1.9 m wide) is clear.
    along, across = minkowski_half_sizes(t([1.0, 0.0]), t([1.0, 0.0]), t(0.0), t([4.5, 1.9]), 0.3)
    assert closed_form((3.0, -2.6), tight, (1.0, 0.0), along.item(), across.item()) < 1e-6
    assert closed_form((3.0, -1.5), tight, (1.0, 0.0), along.item(), across.item()) == pytest.approx(1.0)


def test_half_sizes_follow_the_agents_heading():
    ego = t([1.0, 0.0])
    size = t([4.0, 2.0])
    along, across = minkowski_half_sizes(ego, t([1.0, 0.0]), t(1.0), size, 0.0)
    assert (along.item(), across.item()) == pytest.approx((EGO_HALF_LENGTH + 2.0, EGO_HALF_WIDTH + 1.0))
    along, across = minkowski_half_sizes(ego, t([0.0, 1.0]), t(1.0), size, 0.0)  # crossing
    assert (along.item(), across.item()) == pytest.approx((EGO_HALF_LENGTH + 1.0, EGO_HALF_WIDTH + 2.0))
    along, across = minkowski_half_sizes(ego, t([0.0, 1.0]), t(0.0), size, 0.0)  # still: aligned
    assert (along.item(), across.item()) == pytest.approx((EGO_HALF_LENGTH + 2.0, EGO_HALF_WIDTH + 1.0))


def test_motion_heading_and_the_still_agent():
    t_steps = torch.arange(1, 5, dtype=T64)[:, None]
    moving = torch.cat((t_steps * 2.0, torch.zeros_like(t_steps)), -1)  # 5 m/s along +x
    heading, trust = motion_heading(moving, 0.4)
    assert torch.allclose(heading, t([1.0, 0.0]).expand(4, 2)) and torch.allclose(trust, torch.ones(4, dtype=T64))
    _, still = motion_heading(torch.zeros(4, 2, dtype=T64), 0.4)
    assert (still == 0).all()
    _, creeping = motion_heading(moving * 0.4, 0.4)  # 2 m/s: half way between 1 and 3 m/s
    assert torch.allclose(creeping, torch.full((4,), 0.5, dtype=T64))


def test_gradients_reach_the_mean_and_the_covariance():
    offset = t([2.0, 0.5]).requires_grad_(True)
    cov = t([[1.0, 0.2], [0.2, 0.5]]).requires_grad_(True)
    box_probability(offset, cov, t([1.0, 0.0]), t(3.0), t(1.5)).backward()
    assert offset.grad.norm() > 0 and cov.grad.norm() > 0
    assert offset.grad[1] < 0  # moving the agent further left lowers the probability


def test_first_hit_probability_matches_independent_steps():
    p = torch.tensor([0.5, 0.2, 0.0, 1.0])
    first = first_hit_probability(p)
    assert torch.allclose(first, torch.tensor([0.5, 0.5 * 0.2, 0.0, 0.5 * 0.8 * 1.0]))
    assert first.sum() == pytest.approx(1.0)  # a sure hit at the end: all mass accounted for
