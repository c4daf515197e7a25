"""Entropic risk: its limits, monotonicity in sigma, stability, and the existence outcome."""

from __future__ import annotations

import math

import pytest
import torch

from planning.risk import SMALL_SIGMA, check_sigma, entropic_risk, with_existence

COST = torch.tensor([[0.0, 1.0, 4.0, 10.0], [2.0, 2.0, 2.0, 2.0]], dtype=torch.float64)
LOG_PROB = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64))


def mean_cost() -> torch.Tensor:
    return (LOG_PROB.exp() * COST).sum(-1)


def test_sigma_zero_is_the_expectation_and_the_limit_is_continuous():
    mean = mean_cost()
    assert torch.allclose(entropic_risk(COST, LOG_PROB, torch.tensor(0.0)), mean)
    for sigma in (1e-3, SMALL_SIGMA * 0.99, SMALL_SIGMA * 1.01, -1e-3):
        direct = torch.logsumexp(LOG_PROB + sigma * COST, -1) / sigma  # float64 reference
        assert torch.allclose(entropic_risk(COST, LOG_PROB, torch.tensor(sigma)), direct, atol=1e-6)
    near = entropic_risk(COST, LOG_PROB, torch.tensor(1e-7))
    assert torch.allclose(near, mean, atol=1e-5)


def test_risk_increases_with_sigma_and_stays_between_min_and_max():
    sigmas = torch.tensor([-5.0, -1.0, -0.1, 0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 50.0], dtype=torch.float64)
    risks = torch.stack([entropic_risk(COST, LOG_PROB, s) for s in sigmas])  # (S, 2)
    assert (risks[1:, 0] - risks[:-1, 0] > 0).all()  # strictly, where the cost is random
    assert torch.allclose(risks[:, 1], torch.full_like(risks[:, 1], 2.0))  # a sure cost is its own risk
    positive = sigmas > 0
    assert (risks[positive, 0] >= mean_cost()[0]).all()
    assert (risks[~positive, 0] <= mean_cost()[0] + 1e-12).all()
    assert (risks <= COST.max() + 1e-9).all() and (risks >= COST.min() - 1e-9).all()


def test_finite_for_large_sigma_times_cost_and_tends_to_the_worst_case():
    cost = torch.tensor([0.0, 1e4], dtype=torch.float32)
    log_prob = torch.log(torch.tensor([0.99, 0.01]))
    risk = entropic_risk(cost, log_prob, torch.tensor(1e3))
    assert torch.isfinite(risk) and risk == pytest.approx(1e4 + math.log(0.01) / 1e3, rel=1e-5)
    low = entropic_risk(cost, log_prob, torch.tensor(-1e3))
    assert torch.isfinite(low) and low == pytest.approx(math.log(0.99) / -1e3, abs=1e-3)


def test_gradients_are_finite_on_both_sides_of_the_expansion():
    for sigma in (0.0, SMALL_SIGMA / 2, 0.3, 20.0):
        cost = COST.clone().requires_grad_(True)
        s = torch.tensor(sigma, dtype=torch.float64, requires_grad=True)
        entropic_risk(cost, LOG_PROB, s).sum().backward()
        assert torch.isfinite(cost.grad).all() and torch.isfinite(s.grad)


def test_existence_adds_an_absent_outcome_of_zero_cost():
    cost = torch.tensor([[3.0, 5.0]])
    log_weights = torch.log(torch.tensor([[0.5, 0.5]]))
    outcomes, log_prob = with_existence(cost, log_weights, torch.tensor([0.2]))
    assert torch.allclose(outcomes, torch.tensor([[3.0, 5.0, 0.0]]))
    assert torch.allclose(log_prob.exp(), torch.tensor([[0.1, 0.1, 0.8]]))
    assert entropic_risk(outcomes, log_prob, torch.tensor(0.0)) == pytest.approx(0.2 * 4.0)
    certain = with_existence(cost, log_weights, torch.tensor([1.0]))
    assert entropic_risk(*certain, torch.tensor(0.0)) == pytest.approx(4.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_sigma_is_rejected(bad):
    with pytest.raises(ValueError, match="sigma: expected finite"):
        check_sigma(torch.tensor([0.5, bad]))


def test_sigma_of_the_wrong_shape_or_dtype_is_rejected():
    with pytest.raises(ValueError, match=r"sigma: expected a scalar or shape \[B=2\]"):
        check_sigma(torch.zeros(3), batch=2)
    with pytest.raises(ValueError, match="floating-point"):
        check_sigma(torch.tensor([1]))
    assert check_sigma(0.5).item() == 0.5
