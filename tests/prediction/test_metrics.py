"""Trajectory metrics against hand-computed cases, torch.distributions and scipy's gaussian_kde; mode usage
and coverage against forecasts whose calibration is known by construction."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy.stats import gaussian_kde
from torch.distributions import Categorical, Independent, MixtureSameFamily, MultivariateNormal

from prediction.metrics import (
    ONE_SIGMA_MASS,
    TWO_SIGMA_MASS,
    AgentScores,
    Totals,
    ade_fde,
    best_mode,
    coverage,
    kde_nll,
    min_ade_fde,
    mixture_nll,
    mode_usage,
)
from prediction.types import Forecast

NAN = float("nan")


@pytest.fixture
def hand_case():
    """S=1, A=3, N=2, T=2; truth at the origin. Agent 2 is not scored and holds NaN."""
    truth = torch.zeros(1, 3, 2, 2)
    samples = torch.zeros(1, 3, 2, 2, 2)
    samples[0, 0, 0] = torch.tensor([[0.0, 0.0], [0.0, 2.0]])  # errors 0, 2: ADE 1, FDE 2
    samples[0, 0, 1] = torch.tensor([[3.0, 0.0], [0.6, 0.8]])  # errors 3, 1: ADE 2, FDE 1
    samples[0, 1] = torch.tensor([[3.0, 4.0], [3.0, 4.0]])  # both samples: errors 5, 5
    samples[0, 2] = NAN
    scored = torch.tensor([[True, True, False]])
    return samples, truth, scored


def test_min_ade_and_min_fde_pick_their_best_samples_separately(hand_case):
    samples, truth, scored = hand_case
    scores = min_ade_fde(samples, truth, scored)
    assert scores.values["min_ade"][0].tolist() == pytest.approx([1.0, 5.0, 0.0])
    assert scores.values["min_fde"][0].tolist() == pytest.approx([1.0, 5.0, 0.0])
    assert scores.count == 2
    assert scores.means() == pytest.approx({"min_ade": 3.0, "min_fde": 3.0})


def test_ade_fde_of_a_single_prediction(hand_case):
    samples, truth, scored = hand_case
    scores = ade_fde(samples[:, :, 1], truth, scored)
    assert scores.values["ade"][0, :2].tolist() == pytest.approx([2.0, 5.0])
    assert scores.values["fde"][0, :2].tolist() == pytest.approx([1.0, 5.0])
    assert scores.means() == pytest.approx({"ade": 3.5, "fde": 3.0})


def test_totals_pool_agents_across_batches(hand_case):
    samples, truth, scored = hand_case
    first = min_ade_fde(samples, truth, scored).totals()  # agents with ADE 1 and 5
    only_agent_1 = torch.tensor([[False, True, False]])
    second = min_ade_fde(samples, truth, only_agent_1).totals()  # one agent with ADE 5
    pooled = Totals() + first + second
    assert pooled.count == 3
    assert pooled.means()["min_ade"] == pytest.approx((1 + 5 + 5) / 3)  # not the mean of batch means (4)
    with pytest.raises(ValueError, match="no scored agent"):
        Totals().means()


def test_displacement_inputs_are_checked(hand_case):
    samples, truth, scored = hand_case
    with pytest.raises(ValueError, match=r"samples: expected shape \[S, A, N, T, 2\]"):
        min_ade_fde(samples[..., 0], truth, scored)
    with pytest.raises(ValueError, match=r"truth: expected shape \[S, A, T, 2\] = \(1, 3, 2, 2\)"):
        min_ade_fde(samples, truth[:, :, :1], scored)
    with pytest.raises(ValueError, match="scored: expected a bool tensor"):
        min_ade_fde(samples, truth, scored.float())
    with pytest.raises(ValueError, match=r"scored: expected shape \[S, A\]"):
        min_ade_fde(samples, truth, scored[:, :2])
    with pytest.raises(ValueError, match=r"pred: expected shape \[S, A, T, 2\]"):
        ade_fde(samples, truth, scored)


# -- mixture NLL ---------------------------------------------------------
def random_forecast(gen: torch.Generator, S: int, A: int, K: int, T: int) -> Forecast:
    diag = torch.rand(S, A, K, T, 2, generator=gen, dtype=torch.float64) + 0.2
    lower = torch.randn(S, A, K, T, 2, 2, generator=gen, dtype=torch.float64).tril(-1) * 0.3
    valid = torch.ones(S, A, dtype=torch.bool)
    valid[0, -1] = False
    chol = torch.where(valid[..., None, None, None, None], torch.diag_embed(diag) + lower, 0.0)  # garbage when empty
    return Forecast(
        log_weights=torch.log_softmax(torch.randn(S, A, K, generator=gen, dtype=torch.float64), dim=-1),
        means=torch.randn(S, A, K, T, 2, generator=gen, dtype=torch.float64) * 2.0,
        chol=chol,
        existence=torch.ones(S, A, dtype=torch.float64),
        class_probs=torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand(S, A, 3),
        valid=valid,
    )


def test_mixture_nll_matches_torch_distributions():
    gen = torch.Generator().manual_seed(3)
    S, A, K, T = 2, 3, 3, 4
    forecast = random_forecast(gen, S, A, K, T)
    truth = torch.randn(S, A, T, 2, generator=gen, dtype=torch.float64) * 2.0
    scores = mixture_nll(forecast, truth, forecast.valid)
    for s in range(S):
        for a in range(A):
            if not forecast.valid[s, a]:
                assert scores.values["nll_step"][s, a] == 0 and scores.values["nll_joint"][s, a] == 0
                continue
            modes = Categorical(logits=forecast.log_weights[s, a])
            steps = [MultivariateNormal(forecast.means[s, a, :, t], forecast.covariance[s, a, :, t]) for t in range(T)]
            per_step = [MixtureSameFamily(modes, step).log_prob(truth[s, a, t]).item() for t, step in enumerate(steps)]
            paths = Independent(MultivariateNormal(forecast.means[s, a], scale_tril=forecast.chol[s, a]), 1)
            joint = MixtureSameFamily(modes, paths).log_prob(truth[s, a]).item()
            assert scores.values["nll_step"][s, a].item() == pytest.approx(-np.mean(per_step), rel=1e-9)
            assert scores.values["nll_joint"][s, a].item() == pytest.approx(-joint / T, rel=1e-9)


def test_single_unit_gaussian_at_the_truth():
    truth = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # [1, 1, 2, 2]
    forecast = Forecast(
        log_weights=torch.zeros(1, 1, 1),
        means=truth[:, :, None].clone(),
        chol=torch.eye(2).expand(1, 1, 1, 2, 2, 2).clone(),
        existence=torch.ones(1, 1),
        class_probs=torch.tensor([[[0.0, 1.0, 0.0]]]),
        valid=torch.ones(1, 1, dtype=torch.bool),
    ).validate()
    scores = mixture_nll(forecast, truth, forecast.valid)
    # -log N(0; 0, I) in 2-D is log(2 pi); with one mode the step and joint NLLs agree.
    assert scores.means() == pytest.approx({"nll_step": math.log(2 * math.pi), "nll_joint": math.log(2 * math.pi)})


def test_mixture_nll_refuses_scored_empty_slots():
    forecast = random_forecast(torch.Generator().manual_seed(0), 1, 2, 2, 3)
    truth = torch.zeros(1, 2, 3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="scored but its Forecast slot is not valid"):
        mixture_nll(forecast, truth, torch.ones(1, 2, dtype=torch.bool))


# -- KDE NLL -------------------------------------------------------------
def scipy_kde_nll(samples: np.ndarray, truth: np.ndarray) -> float:
    """One agent the way Trajectron++'s compute_kde_nll does it: samples [N, T, 2], truth [T, 2]."""
    T = truth.shape[0]
    logs = [np.clip(gaussian_kde(samples[:, t].T).logpdf(truth[t]), -20.0, None)[0] for t in range(T)]
    return -float(np.mean(logs))


def test_kde_nll_matches_scipy_gaussian_kde():
    gen = torch.Generator().manual_seed(7)
    S, A, N, T = 2, 3, 20, 4
    spread = torch.tensor([0.3, 1.0, 2.5], dtype=torch.float64)[None, :, None, None, None]
    samples = torch.randn(S, A, N, T, 2, generator=gen, dtype=torch.float64) * spread
    samples[..., 0] = samples[..., 0] * 1.7 + 0.5 * samples[..., 1]  # correlated, anisotropic
    truth = torch.randn(S, A, T, 2, generator=gen, dtype=torch.float64)
    scored = torch.ones(S, A, dtype=torch.bool)
    scores = kde_nll(samples.float(), truth.float(), scored)
    for s in range(S):
        for a in range(A):
            want = scipy_kde_nll(samples.float()[s, a].double().numpy(), truth.float()[s, a].double().numpy())
            assert scores.values["kde_nll"][s, a].item() == pytest.approx(want, rel=1e-6, abs=1e-6)


def test_kde_nll_clips_each_step_at_minus_20():
    gen = torch.Generator().manual_seed(1)
    samples = torch.randn(1, 1, 20, 3, 2, generator=gen)
    truth = torch.full((1, 1, 3, 2), 100.0)  # far outside every kernel
    scores = kde_nll(samples, truth, torch.ones(1, 1, dtype=torch.bool))
    assert scores.values["kde_nll"].item() == pytest.approx(20.0)
    assert kde_nll(samples, truth, torch.ones(1, 1, dtype=torch.bool), clip=-50.0).values["kde_nll"].item() > 20.0


def test_kde_nll_floors_singular_kernels():
    # A deterministic model: all 20 samples identical; scipy raises LinAlgError here.
    truth = torch.tensor([[[[1.0, 1.0], [2.0, 2.0]]]])
    samples = truth[:, :, None].expand(1, 1, 20, 2, 2).clone()
    scores = kde_nll(samples, truth, torch.ones(1, 1, dtype=torch.bool), min_kernel_std=0.01)
    # Every kernel is N(truth, 0.01^2 I): -log density at its centre is log(2 pi 1e-4).
    assert scores.values["kde_nll"].item() == pytest.approx(math.log(2 * math.pi * 1e-4))
    # Collinear samples (zero spread across the line) stay finite too.
    line = torch.linspace(-1, 1, 20)[:, None] * torch.tensor([1.0, 2.0])  # [20, 2]
    collinear = line[None, None, :, None].expand(1, 1, 20, 2, 2)
    assert torch.isfinite(kde_nll(collinear, truth, torch.ones(1, 1, dtype=torch.bool)).values["kde_nll"]).all()


def test_kde_nll_inputs_are_checked():
    samples, truth = torch.zeros(1, 1, 1, 2, 2), torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="N >= 2 samples"):
        kde_nll(samples, truth, torch.ones(1, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="min_kernel_std"):
        kde_nll(samples.expand(1, 1, 3, 2, 2), truth, torch.ones(1, 1, dtype=torch.bool), min_kernel_std=0.0)


def test_agent_scores_sum_only_scored_agents():
    scores = AgentScores({"x": torch.tensor([[1.0, NAN, 4.0]])}, torch.tensor([[True, False, True]]))
    assert scores.totals() == Totals({"x": 5.0}, 2)
    assert scores.means() == {"x": 2.5}


# -- mode usage and coverage ---------------------------------------------
def _single_gaussian(means: torch.Tensor, std: float) -> Forecast:
    """One mode with isotropic std per agent and step; means [S, A, T, 2]."""
    S, A, T, _ = means.shape
    return Forecast(
        log_weights=torch.zeros(S, A, 1, dtype=means.dtype),
        means=means[:, :, None].clone(),
        chol=(std * torch.eye(2, dtype=means.dtype)).expand(S, A, 1, T, 2, 2).clone(),
        existence=torch.ones(S, A, dtype=means.dtype),
        class_probs=torch.tensor([0.0, 1.0, 0.0], dtype=means.dtype).expand(S, A, 3),
        valid=torch.ones(S, A, dtype=torch.bool),
    ).validate()


def test_mode_usage_from_collapsed_to_uniform():
    forecast = random_forecast(torch.Generator().manual_seed(1), 1, 3, 4, 2)
    log_w = torch.log(torch.tensor([[[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25], [0.9, 0.06, 0.04, 0.0]]],
                                   dtype=torch.float64))  # fmt: skip
    forecast = dataclasses.replace(forecast, log_weights=log_w, valid=torch.ones(1, 3, dtype=torch.bool))
    usage = mode_usage(forecast, forecast.valid).values
    third = -sum(w * math.log(w) for w in (0.9, 0.06, 0.04))
    assert usage["mode_entropy"][0].tolist() == pytest.approx([0.0, math.log(4), third])
    assert usage["modes_used"][0].tolist() == [1, 4, 2]
    assert usage["top_weight"][0].tolist() == pytest.approx([1.0, 0.25, 0.9])


def test_a_calibrated_gaussian_covers_its_one_and_two_sigma_ellipses():
    gen = torch.Generator().manual_seed(0)
    S, A, T, std = 40, 25, 3, 0.7
    means = torch.randn(S, A, T, 2, generator=gen, dtype=torch.float64)
    truth = means + std * torch.randn(S, A, T, 2, generator=gen, dtype=torch.float64)
    forecast = _single_gaussian(means, std)
    got = coverage(forecast, truth, forecast.valid, generator=gen).means()
    assert got["coverage_1sigma"] == pytest.approx(ONE_SIGMA_MASS, abs=0.03)
    assert got["coverage_2sigma"] == pytest.approx(TWO_SIGMA_MASS, abs=0.03)
    overconfident = coverage(_single_gaussian(means, std / 3), truth, forecast.valid, generator=gen).means()
    assert overconfident["coverage_2sigma"] < 0.3
    underconfident = coverage(_single_gaussian(means, std * 3), truth, forecast.valid, generator=gen).means()
    assert underconfident["coverage_1sigma"] > 0.9


def test_a_two_mode_mixture_covers_the_truth_near_either_mode():
    """Truth drawn from a well-separated two-mode mixture: its high-density regions are two ellipses, and the
    truth falls inside at the nominal rates; a forecast holding only one of the modes misses half of it."""
    gen = torch.Generator().manual_seed(1)
    S, A, T, std = 40, 25, 2, 0.5
    centres = torch.tensor([[-5.0, 0.0], [5.0, 0.0]], dtype=torch.float64)
    pick = torch.randint(0, 2, (S, A, 1), generator=gen).expand(S, A, T)
    truth = centres[pick] + std * torch.randn(S, A, T, 2, generator=gen, dtype=torch.float64)
    means = centres[None, None, :, None].expand(S, A, 2, T, 2).clone()
    both = dataclasses.replace(
        _single_gaussian(means[:, :, 0], std),
        log_weights=torch.full((S, A, 2), math.log(0.5), dtype=torch.float64),
        means=means,
        chol=(std * torch.eye(2, dtype=torch.float64)).expand(S, A, 2, T, 2, 2).clone(),
    ).validate()
    got = coverage(both, truth, both.valid, generator=gen).means()
    assert got["coverage_2sigma"] == pytest.approx(TWO_SIGMA_MASS, abs=0.04)
    one = coverage(_single_gaussian(means[:, :, 0], std), truth, both.valid, generator=gen).means()
    assert one["coverage_2sigma"] == pytest.approx(TWO_SIGMA_MASS / 2, abs=0.05)


def test_coverage_checks_its_inputs():
    forecast = random_forecast(torch.Generator().manual_seed(0), 1, 2, 2, 3)
    truth = torch.zeros(1, 2, 3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="at least 2 draws"):
        coverage(forecast, truth, torch.zeros(1, 2, dtype=torch.bool), samples=1)
    with pytest.raises(ValueError, match="scored but its Forecast slot is not valid"):
        coverage(forecast, truth, torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"truth: expected shape"):
        coverage(forecast, truth[:, :, :2], forecast.valid)


def test_best_mode_finds_the_alternative_that_follows_the_truth_and_its_weight():
    """Two straight modes, left (weight 0.3) and right (0.7); the truth goes left: the best mode is the
    light one, exactly on the truth, and its weight is reported."""
    t = torch.arange(1, 13, dtype=torch.float32)
    left = torch.stack((t, torch.full_like(t, 2.0)), dim=-1)
    right = torch.stack((t, torch.full_like(t, -2.0)), dim=-1)
    means = torch.stack((left, right))[None, None]  # [1, 1, 2, T, 2]
    forecast = Forecast(
        log_weights=torch.tensor([[[0.3, 0.7]]]).log(), means=means,
        chol=0.5 * torch.eye(2).expand(1, 1, 2, 12, 2, 2), existence=torch.ones(1, 1),
        class_probs=torch.tensor([[[0.0, 1.0, 0.0]]]), valid=torch.ones(1, 1, dtype=torch.bool),
    )  # fmt: skip
    values = best_mode(forecast, left[None, None], torch.ones(1, 1, dtype=torch.bool)).values
    assert float(values["modes_min_ade"]) == 0.0 and float(values["modes_min_fde"]) == 0.0
    assert float(values["best_mode_weight"]) == pytest.approx(0.3)
