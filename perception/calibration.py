"""Calibration of probabilities: reliability tables, expected calibration error, temperature scaling,
and position-covariance scaling.

The existence probability of a detection is calibrated when, among detections
given probability p, a fraction p turn out to be real (matched a ground-truth
object; see `perception.metrics.existence_outcomes`). Temperature scaling fits
one scalar T > 0 on validation data so that `sigmoid(logit / T)` minimises the
negative log-likelihood of the outcomes; T > 1 softens overconfident
probabilities, T < 1 sharpens underconfident ones. The fitted float is stored
by the checkpoint code and applied at the edge of the model with
`apply_temperature` / `calibrate_probability` (plain tensor ops, exportable).

Position covariances get the same treatment (variance scaling, Levi et al.
2019): one scalar s > 0 multiplies every position covariance, fitted on the
validation split's matched detections by maximum likelihood. For a 2-D
Gaussian the NLL of an error with squared Mahalanobis distance d^2 under the
covariance s * Sigma is d^2 / (2 s) + log s + const, minimised at
s = mean(d^2) / 2 in closed form (`fit_covariance_scale`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import Tensor

# log T is searched in [log 1e-2, log 1e2]; a bound is hit only by degenerate data.
TEMPERATURE_BOUNDS = (1e-2, 1e2)


def _as_vector(name: str, values: Tensor | np.ndarray, dtype: type = np.float64) -> np.ndarray:
    array = values.detach().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {array.shape}")
    return array.astype(dtype)


def _paired(probs_name: str, probs, outcomes) -> tuple[np.ndarray, np.ndarray]:
    values = _as_vector(probs_name, probs)
    labels = _as_vector("outcomes", outcomes)
    if values.shape != labels.shape:
        raise ValueError(f"outcomes: expected shape {values.shape} to match {probs_name}, got {labels.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{probs_name}: expected finite values, found NaN or inf")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise ValueError("outcomes: expected booleans or 0/1 values")
    return values, labels


def _check_probabilities(probs: np.ndarray) -> None:
    if probs.size and (probs.min() < 0.0 or probs.max() > 1.0):
        raise ValueError(f"probs: expected values in [0, 1], got range [{probs.min():.6g}, {probs.max():.6g}]")


@dataclass(frozen=True)
class ReliabilityTable:
    """Equal-width bins over [0, 1]; empty bins have NaN means.

    Attributes:
        lower, upper: (bins,) bin edges; bin i holds lower <= p < upper (the last includes 1).
        count: (bins,) samples per bin.
        mean_probability: (bins,) mean predicted probability in the bin.
        frequency: (bins,) fraction of positive outcomes in the bin.
    """

    lower: np.ndarray
    upper: np.ndarray
    count: np.ndarray
    mean_probability: np.ndarray
    frequency: np.ndarray

    def expected_calibration_error(self) -> float:
        """Sum over bins of (count / total) * |frequency - mean probability|; NaN with no samples."""
        total = self.count.sum()
        if total == 0:
            return math.nan
        used = self.count > 0
        gaps = np.abs(self.frequency[used] - self.mean_probability[used])
        return float(np.sum(self.count[used] / total * gaps))

    def as_dict(self) -> dict[str, list[float]]:
        """Plain lists, for JSON reports."""
        return {name: getattr(self, name).tolist() for name in self.__dataclass_fields__}


def reliability_table(probs: Tensor | np.ndarray, outcomes: Tensor | np.ndarray, bins: int = 15) -> ReliabilityTable:
    """Bin predicted probabilities (D,) against binary outcomes (D,) into `bins` equal-width bins."""
    if not (isinstance(bins, int) and bins >= 1):
        raise ValueError(f"bins: expected an int >= 1, got {bins!r}")
    values, labels = _paired("probs", probs, outcomes)
    _check_probabilities(values)
    index = np.minimum((values * bins).astype(np.int64), bins - 1)  # (D,); p = 1 joins the last bin
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_probability = np.bincount(index, weights=values, minlength=bins) / count
        frequency = np.bincount(index, weights=labels, minlength=bins) / count
    edges = np.linspace(0.0, 1.0, bins + 1)
    return ReliabilityTable(edges[:-1], edges[1:], count, mean_probability, frequency)


def expected_calibration_error(probs: Tensor | np.ndarray, outcomes: Tensor | np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width bins weighted by their counts; NaN for no samples."""
    return reliability_table(probs, outcomes, bins).expected_calibration_error()


def probability_to_logit(probs: Tensor, eps: float = 1e-6) -> Tensor:
    """Log-odds of probabilities, clamped to [eps, 1 - eps] so 0 and 1 stay finite."""
    clamped = probs.clamp(eps, 1.0 - eps)
    return torch.log(clamped) - torch.log1p(-clamped)


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """Scaled logits `logits / temperature`; `sigmoid` of them is the calibrated probability."""
    if not temperature > 0:
        raise ValueError(f"temperature: expected > 0, got {temperature!r}")
    return logits / temperature


def calibrate_probability(probs: Tensor, temperature: float, eps: float = 1e-6) -> Tensor:
    """`sigmoid(logit(probs) / temperature)`, for models that output probabilities."""
    return torch.sigmoid(apply_temperature(probability_to_logit(probs, eps), temperature))


def binary_nll(logits: np.ndarray, outcomes: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood, nats, of 0/1 outcomes under `sigmoid(logits / temperature)`."""
    z = logits / temperature
    # -log sigmoid(z) = softplus(-z); -log(1 - sigmoid(z)) = softplus(z).
    return float(np.mean(np.logaddexp(0.0, z) - outcomes * z))


def fit_temperature(logits: Tensor | np.ndarray, outcomes: Tensor | np.ndarray) -> float:
    """The temperature T > 0 minimising `binary_nll(logits, outcomes, T)`.

    The NLL is convex in 1 / T, hence unimodal in log T, so a bounded Brent
    search on log T over `TEMPERATURE_BOUNDS` finds the optimum,
    deterministically. Data that is perfectly separated by the logits drives T
    to the lower bound; all-zero logits make T irrelevant.
    """
    values, labels = _paired("logits", logits, outcomes)
    if values.size == 0:
        raise ValueError("logits: expected at least one sample to fit a temperature, got none")
    low, high = (math.log(t) for t in TEMPERATURE_BOUNDS)
    result = minimize_scalar(
        lambda log_t: binary_nll(values, labels, math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(math.exp(result.x))


def fit_covariance_scale(mahalanobis_sq: Tensor | np.ndarray, min_samples: int = 1) -> float:
    """The s > 0 maximising the likelihood of 2-D errors whose squared Mahalanobis distances under the
    model's covariances are `mahalanobis_sq` (D,), when every covariance is multiplied by s: mean(d^2) / 2.

    s > 1 widens overconfident covariances; s < 1 tightens underconfident ones. A perfectly calibrated
    2-D Gaussian has E[d^2] = 2, hence s = 1.
    """
    d2 = _as_vector("mahalanobis_sq", mahalanobis_sq)
    if d2.size < min_samples:
        raise ValueError(f"mahalanobis_sq: expected at least {min_samples} matched detections, got {d2.size}")
    if not np.isfinite(d2).all() or (d2 < 0).any():
        raise ValueError("mahalanobis_sq: expected finite values >= 0, found NaN, inf or a negative value")
    # A floor keeps s > 0 when every error is exactly zero (degenerate, synthetic data).
    return float(max(d2.mean() / 2.0, 1e-6))
