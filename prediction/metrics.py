"""Trajectory metrics for the ETH/UCY protocol: minADE/minFDE, ADE/FDE, mixture NLL, KDE NLL, and what
the forecast's modes and spread are worth: mode usage and calibrated coverage.

Every metric is batched over S windows x A agent slots and returns an
`AgentScores`: per-agent values [S, A] for each named metric plus the `scored`
mask. Per-scene averages over many batches come from summing, not averaging
averages:

    totals = {}
    for scene, batch in batches:
        scores = min_ade_fde(samples, truth, batch.scored())
        totals[scene] = totals.get(scene, Totals()) + scores.totals()
    totals["zara1"].means()   # {"min_ade": ..., "min_fde": ...}, m

Units: displacements in m; NLLs in nats per step of a 2-D position density in
1/m^2 (lower is better; they can be negative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.distributions import MixtureSameFamily, MultivariateNormal

from prediction.types import Forecast

KDE_LOG_PDF_FLOOR = -20.0  # Trajectron++'s log_pdf_lower_bound
KDE_MIN_KERNEL_STD = 0.01  # m, floor on the KDE kernel's principal std (see kde_nll)
MODE_WEIGHT_THRESHOLD = 0.05  # a mode "carries weight" above this probability
# Probability inside a 2-D Gaussian's 1- and 2-sigma ellipses (Mahalanobis radius r: 1 - exp(-r^2 / 2)).
ONE_SIGMA_MASS = 1.0 - math.exp(-0.5)
TWO_SIGMA_MASS = 1.0 - math.exp(-2.0)
COVERAGE_SAMPLES = 256  # Monte Carlo draws per step that place the coverage regions' boundaries


# -- results -------------------------------------------------------------
@dataclass(frozen=True)
class Totals:
    """Sums of per-agent metric values and the number of agents they cover.

    Adding two Totals pools their agents, so a scene's mean is exact whatever
    the batch sizes were.
    """

    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0

    def __add__(self, other: Totals) -> Totals:
        names = self.sums.keys() | other.sums.keys()
        sums = {n: self.sums.get(n, 0.0) + other.sums.get(n, 0.0) for n in sorted(names)}
        return Totals(sums, self.count + other.count)

    def means(self) -> dict[str, float]:
        """Mean of each metric over the pooled agents."""
        if self.count == 0:
            raise ValueError("Totals.means: no scored agent, the mean is undefined")
        return {name: value / self.count for name, value in self.sums.items()}


@dataclass(frozen=True)
class AgentScores:
    """Per-agent values of one or more metrics over a batch of windows.

    Attributes:
        values: metric name -> [S, A] float, the agent's value; 0 where not `scored`.
        scored: [S, A] bool, the agents the values count for.
    """

    values: dict[str, Tensor]
    scored: Tensor

    @property
    def count(self) -> int:
        return int(self.scored.sum())

    def totals(self) -> Totals:
        """Sums over scored agents (float64), for pooling across batches."""
        sums = {name: float(v.double()[self.scored].sum()) for name, v in self.values.items()}
        return Totals(sums, self.count)

    def means(self) -> dict[str, float]:
        """Mean of each metric over the scored agents of this batch."""
        return self.totals().means()


def _scores(values: dict[str, Tensor], scored: Tensor) -> AgentScores:
    """Zero the unscored slots (they may hold NaN from filler inputs) and wrap."""
    clean = {name: torch.where(scored, v, torch.zeros_like(v)) for name, v in values.items()}
    return AgentScores(clean, scored)


# -- checks --------------------------------------------------------------
def _check_scored(scored: Tensor, S: int, A: int) -> None:
    if not isinstance(scored, Tensor) or scored.dtype != torch.bool:
        raise ValueError(f"scored: expected a bool tensor [S, A], got {getattr(scored, 'dtype', type(scored))}")
    if tuple(scored.shape) != (S, A):
        raise ValueError(f"scored: expected shape [S, A] = {(S, A)}, got {tuple(scored.shape)}")


def _check_truth(truth: Tensor, S: int, A: int, T: int) -> None:
    if not isinstance(truth, Tensor) or tuple(truth.shape) != (S, A, T, 2):
        raise ValueError(f"truth: expected shape [S, A, T, 2] = {(S, A, T, 2)}, got {tuple(truth.shape)}")


def _check_samples(samples: Tensor) -> tuple[int, int, int, int]:
    if not isinstance(samples, Tensor) or samples.dim() != 5 or samples.shape[-1] != 2:
        raise ValueError(f"samples: expected shape [S, A, N, T, 2], got {tuple(getattr(samples, 'shape', ()))}")
    S, A, N, T, _ = samples.shape
    if N < 1 or T < 1:
        raise ValueError(f"samples: expected N >= 1 samples and T >= 1 steps, got shape {tuple(samples.shape)}")
    return S, A, N, T


# -- displacement errors -------------------------------------------------
def min_ade_fde(samples: Tensor, truth: Tensor, scored: Tensor) -> AgentScores:
    """Best-of-N displacement errors, "min_ade" and "min_fde", m.

    As in Social-GAN and Trajectron++ (`compute_batch_statistics(best_of=True)`
    takes `np.min` of the per-sample ADEs and, separately, of the per-sample
    FDEs): minADE uses the sample with the lowest ADE, minFDE the sample with
    the lowest FDE, which need not be the same sample.

    Args:
        samples: [S, A, N, T, 2] float, N predicted paths per agent, m.
        truth: [S, A, T, 2] float, true future, m.
        scored: [S, A] bool, agents to evaluate.
    """
    S, A, _, T = _check_samples(samples)
    _check_truth(truth, S, A, T)
    _check_scored(scored, S, A)
    error = torch.linalg.vector_norm(samples - truth[:, :, None], dim=-1)  # [S, A, N, T]
    ade = error.mean(dim=-1).amin(dim=-1)  # [S, A]
    fde = error[..., -1].amin(dim=-1)  # [S, A]
    return _scores({"min_ade": ade, "min_fde": fde}, scored)


def ade_fde(pred: Tensor, truth: Tensor, scored: Tensor) -> AgentScores:
    """Displacement errors "ade" and "fde" of one prediction per agent (e.g. the most likely), m.

    Args:
        pred: [S, A, T, 2] float, m.
        truth: [S, A, T, 2] float, m.
        scored: [S, A] bool.
    """
    if not isinstance(pred, Tensor) or pred.dim() != 4 or pred.shape[-1] != 2:
        raise ValueError(f"pred: expected shape [S, A, T, 2], got {tuple(getattr(pred, 'shape', ()))}")
    scores = min_ade_fde(pred[:, :, None], truth, scored)
    return AgentScores({"ade": scores.values["min_ade"], "fde": scores.values["min_fde"]}, scores.scored)


# -- likelihoods ---------------------------------------------------------
def mixture_nll(forecast: Forecast, truth: Tensor, scored: Tensor) -> AgentScores:
    """Exact NLL of the true future under the forecast's Gaussian mixture, nats per step.

    Two numbers per agent:
        "nll_step": the per-step marginal mixture NLL, -log sum_k w_k N(x_t; mu_kt, Sigma_kt),
            averaged over the T steps. Each step is scored on its own, as the KDE NLL does,
            so the two are comparable.
        "nll_joint": -log p(x_1..x_T) / T under the whole-trajectory mixture
            (`Forecast.distribution().log_prob`), where one mode explains all T steps
            together; with a single mode the two are equal.

    Args:
        forecast: B = S windows of A agents, T steps, in the frame of `truth`.
        truth: [S, A, T, 2] float, m.
        scored: [S, A] bool.
    """
    S, A = forecast.valid.shape
    T = forecast.horizon_steps
    _check_truth(truth, S, A, T)
    _check_scored(scored, S, A)
    if bool((scored & ~forecast.valid).any()):
        raise ValueError("scored: an agent is scored but its Forecast slot is not valid")
    paths = forecast.distribution()  # batch [S, A], event [T, 2]; empty slots made finite
    truth = truth.to(forecast.means.dtype)
    per_step = _step_log_density(paths, truth[None])[0]  # [S, A, T]
    joint = paths.log_prob(truth)  # [S, A]
    return _scores({"nll_step": -per_step.mean(dim=-1), "nll_joint": -joint / T}, scored)


def _scott_kernel_cov(samples: Tensor) -> Tensor:
    """[..., 2, 2] kernel covariance of scipy's gaussian_kde: Scott's factor^2 x sample covariance.

    samples: [..., N, 2]. scipy: factor = n^(-1/(d+4)), covariance = factor^2 *
    np.cov(data) (unbiased, ddof=1), with d = 2.
    """
    N = samples.shape[-2]
    centred = samples - samples.mean(dim=-2, keepdim=True)
    cov = centred.transpose(-1, -2) @ centred / (N - 1)
    return cov * N ** (-2.0 / (2 + 4))


def _floor_eigenvalues(cov: Tensor, min_std: float) -> Tensor:
    """[..., 2, 2] the same covariance with every eigenvalue raised to at least min_std^2."""
    eigenvalues, vectors = torch.linalg.eigh(cov)
    floored = eigenvalues.clamp(min=min_std**2)
    return vectors @ torch.diag_embed(floored) @ vectors.transpose(-1, -2)


def kde_nll(
    samples: Tensor,
    truth: Tensor,
    scored: Tensor,
    clip: float = KDE_LOG_PDF_FLOOR,
    min_kernel_std: float = KDE_MIN_KERNEL_STD,
) -> AgentScores:
    """Trajectron++'s KDE NLL, "kde_nll", nats per step.

    Trajectron++ (`trajectron/evaluation/evaluation.py`, `compute_kde_nll`) fits,
    for every agent and step, `scipy.stats.gaussian_kde` to the N sampled
    positions (Scott's bandwidth) and scores the true position:
    `np.clip(kde.logpdf(gt), a_min=-20, a_max=None)`, averaged over steps; the NLL
    is minus that, then averaged over agents. Here the same in one batched torch
    computation (float64): a logsumexp over the N kernels.

    Singular samples: scipy raises LinAlgError when the N samples of a step are
    identical or collinear (a deterministic model, a pedestrian standing still)
    and Trajectron++ then reports NaN. Instead, the kernel covariance's
    eigenvalues are floored at `min_kernel_std^2` (default 1 cm, below the
    annotation noise of ETH/UCY); kernels wider than that are untouched and
    match scipy exactly.

    Args:
        samples: [S, A, N, T, 2] float, N >= 2 sampled paths per agent, m.
        truth: [S, A, T, 2] float, m.
        scored: [S, A] bool.
        clip: lower bound on each step's log-density (Trajectron++: -20).
        min_kernel_std: floor on the kernel's principal standard deviations, m.
    """
    S, A, N, T = _check_samples(samples)
    _check_truth(truth, S, A, T)
    _check_scored(scored, S, A)
    if N < 2:
        raise ValueError(f"samples: kde_nll needs N >= 2 samples per agent (a sample covariance), got N = {N}")
    if not min_kernel_std > 0:
        raise ValueError(f"min_kernel_std: expected > 0 m, got {min_kernel_std}")
    points = samples.double().transpose(2, 3)  # [S, A, T, N, 2]
    cov = _floor_eigenvalues(_scott_kernel_cov(points), min_kernel_std)  # [S, A, T, 2, 2]
    chol = torch.linalg.cholesky(cov)[..., None, :, :]  # [S, A, T, 1, 2, 2], shared by the N kernels
    kernels = MultivariateNormal(points, scale_tril=chol, validate_args=False)  # batch [S, A, T, N]
    log_kernel = kernels.log_prob(truth.double()[:, :, :, None])  # [S, A, T, N]
    log_pdf = torch.logsumexp(log_kernel, dim=-1) - math.log(N)  # [S, A, T]
    nll = -log_pdf.clamp(min=clip).mean(dim=-1)  # [S, A]
    return _scores({"kde_nll": nll}, scored)


# -- mode usage and calibration ------------------------------------------
def mode_usage(forecast: Forecast, scored: Tensor, threshold: float = MODE_WEIGHT_THRESHOLD) -> AgentScores:
    """How many of the forecast's modes are alive, per agent.

    "mode_entropy": -sum_k w_k log w_k, nats (0 when one mode holds everything, log K when uniform);
    "modes_used": how many modes weigh more than `threshold`;
    "top_weight": the largest mode weight.
    """
    S, A = forecast.valid.shape
    _check_scored(scored, S, A)
    log_w = forecast.log_weights
    w = log_w.exp()
    entropy = -(w * torch.where(w > 0, log_w, torch.zeros_like(log_w))).sum(-1)
    values = {"mode_entropy": entropy, "modes_used": (w > threshold).sum(-1).to(w.dtype), "top_weight": w.amax(-1)}
    return _scores(values, scored)


def best_mode(forecast: Forecast, truth: Tensor, scored: Tensor) -> AgentScores:
    """Whether one of the forecast's alternatives follows the truth, whatever its weight.

    "modes_min_ade" / "modes_min_fde": the best of the K mode means (m; the minADE@K of mode-based
    predictors, each minimised separately as `min_ade_fde` does); "best_mode_weight": the weight of the
    mode whose mean ends closest to the truth (how much of the forecast a planner gives to it).
    """
    best = min_ade_fde(forecast.means, truth, scored).values
    end_error = torch.linalg.vector_norm(forecast.means[..., -1, :] - truth[:, :, None, -1], dim=-1)  # [S, A, K]
    closest = end_error.argmin(dim=-1, keepdim=True)
    weight = forecast.log_weights.exp().gather(-1, closest).squeeze(-1)
    return _scores({"modes_min_ade": best["min_ade"], "modes_min_fde": best["min_fde"], "best_mode_weight": weight},
                   scored)  # fmt: skip


def _step_log_density(paths: MixtureSameFamily, points: Tensor) -> Tensor:
    """log p_t(x) of the per-step marginal mixture of `paths` (`Forecast.distribution()`) at `points`
    [N, S, A, T, 2] -> [N, S, A, T]."""
    steps = paths.component_distribution.base_dist  # batch [S, A, K, T], event [2]
    per_mode = steps.log_prob(points[:, :, :, None])  # [N, S, A, K, T]
    log_weights = paths.mixture_distribution.logits  # [S, A, K], normalised
    return torch.logsumexp(per_mode + log_weights[..., None], dim=-2)


def _sample_steps(paths: MixtureSameFamily, samples: int, generator: torch.Generator | None) -> Tensor:
    """`samples` draws of every step's marginal mixture of `paths`: [N, S, A, T, 2]."""
    means, chol = paths.component_distribution.base_dist.loc, paths.component_distribution.base_dist.scale_tril
    S, A, K, T, _ = means.shape
    weights = paths.mixture_distribution.probs.reshape(S * A, K)
    mode = torch.multinomial(weights, samples, replacement=True, generator=generator).T.reshape(samples, S, A)
    index = mode[..., None, None].expand(samples, S, A, T, 2)
    mean = means[None].expand(samples, -1, -1, -1, -1, -1).gather(3, index[:, :, :, None]).squeeze(3)
    index = mode[..., None, None, None].expand(samples, S, A, T, 2, 2)
    tril = chol[None].expand(samples, -1, -1, -1, -1, -1, -1).gather(3, index[:, :, :, None]).squeeze(3)
    noise = torch.randn(samples, S, A, T, 2, 1, generator=generator, dtype=means.dtype)
    return mean + (tril @ noise).squeeze(-1)


def coverage(
    forecast: Forecast,
    truth: Tensor,
    scored: Tensor,
    samples: int = COVERAGE_SAMPLES,
    generator: torch.Generator | None = None,
) -> AgentScores:
    """Calibration of the forecast's spread: how often the truth falls inside its 1- and 2-sigma regions.

    "coverage_1sigma" / "coverage_2sigma": the fraction of the T steps whose true position lies in the
    highest-density region of that step's marginal mixture holding `ONE_SIGMA_MASS` (39.3 %) /
    `TWO_SIGMA_MASS` (86.5 %) of its probability. For one Gaussian mode that region is exactly the 1- or
    2-sigma ellipse; for a mixture it is the set {x: p_t(x) >= c}, whose level c is the matching quantile
    of p_t over `samples` draws from the mixture (Monte Carlo: about +-3 points at 256 draws per step,
    averaging out over agents). A calibrated forecast covers 39.3 % and 86.5 % on held-out data; less
    is over-confident, more under-confident.
    """
    S, A = forecast.valid.shape
    T = forecast.horizon_steps
    _check_truth(truth, S, A, T)
    _check_scored(scored, S, A)
    if samples < 2:
        raise ValueError(f"samples: coverage needs at least 2 draws per step, got {samples}")
    if bool((scored & ~forecast.valid).any()):
        raise ValueError("scored: an agent is scored but its Forecast slot is not valid")
    paths = forecast.distribution()  # empty slots made finite
    drawn = _step_log_density(paths, _sample_steps(paths, samples, generator))  # [N, S, A, T]
    at_truth = _step_log_density(paths, truth[None].to(forecast.means.dtype))[0]  # [S, A, T]
    values = {}
    for name, mass in (("coverage_1sigma", ONE_SIGMA_MASS), ("coverage_2sigma", TWO_SIGMA_MASS)):
        level = torch.quantile(drawn, 1.0 - mass, dim=0)  # [S, A, T]
        values[name] = (at_truth >= level).to(drawn.dtype).mean(-1)
    return _scores(values, scored)
