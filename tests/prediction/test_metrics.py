"""Trajectory metrics against hand-computed cases, torch.distributions and scipy's gaussian_kde."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import gaussian_kde
from torch.distributions import Categorical, Independent, MixtureSameFamily, MultivariateNormal

from prediction.metrics import AgentScores, Totals, ade_fde, kde_nll, min_ade_fde, mixture_nll
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
