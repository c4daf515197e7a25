"""Measurement update of each track from all detections at once, weighted by association.

The posterior of a track is a Gaussian mixture: "missed" (the prediction)
with weight missed_a, and, for each detection n, the Kalman update with that
detection's own covariance R_n, with weight assoc[a, n]. It is collapsed to
one Gaussian by moment matching, which is the PDA update (combined innovation
plus the spread-of-innovations term) generalised to a different R per
detection. With C = P H^T, w_n = S_n^-1 nu_n and g = sum_n assoc_n w_n:

    mean+ = mean + C g
    cov+  = P - C (sum_n assoc_n S_n^-1 - U) C^T,
    U     = sum_n assoc_n (w_n - g)(w_n - g)^T + missed g g^T   (the spread)

so every per-detection quantity is a 2x2 or a 2-vector.
"""

from __future__ import annotations

from torch import Tensor

from perception.tracking.association import Marginals, PairGeometry
from perception.tracking.motion import symmetrise
from perception.types import STATE_POS

# Keeps averages defined where a slot has neither evidence nor association (empty slots).
_EPS_WEIGHT = 1e-6


def _outer(v: Tensor) -> Tensor:
    return v.unsqueeze(-1) * v.unsqueeze(-2)


def pda_update(mean: Tensor, cov: Tensor, pairs: PairGeometry, marg: Marginals) -> tuple[Tensor, Tensor]:
    """Moment-matched posterior of `mean [B, A, 4]`, `cov [B, A, 4, 4]` (module docstring)."""
    cross = cov[..., :, STATE_POS]  # (B, A, 4, 2) C = P H^T
    assoc = marg.assoc.unsqueeze(-1)  # (B, A, N, 1)
    combined = (assoc * pairs.whitened).sum(2)  # (B, A, 2) g
    new_mean = mean + (cross @ combined.unsqueeze(-1)).squeeze(-1)
    deviation = pairs.whitened - combined.unsqueeze(2)  # (B, A, N, 2)
    spread = (assoc.unsqueeze(-1) * _outer(deviation)).sum(2) + marg.missed[..., None, None] * _outer(combined)
    information = (assoc.unsqueeze(-1) * pairs.s_inv).sum(2)  # (B, A, 2, 2)
    new_cov = cov - cross @ (information - spread) @ cross.transpose(-1, -2)
    return new_mean, symmetrise(new_cov)


def existence_update(predicted: Tensor, missed: Tensor, detection_prob: float) -> Tensor:
    """[B, A] posterior existence: 1 if a detection is the track's, else P(exists | missed).

    P(exists | no detection) = e (1 - P_D) / (1 - P_D e), the JIPDA miss update.
    """
    exists_if_missed = predicted * (1.0 - detection_prob) / (1.0 - detection_prob * predicted)
    return (1.0 - missed) + missed * exists_if_missed


def average_attribute(current: Tensor, evidence: Tensor, assoc: Tensor, observed: Tensor) -> Tensor:
    """Association-weighted running average of a per-track attribute.

    Args:
        current: [B, A, D] the track's value, an average over `evidence` detections.
        evidence: [B, A] soft count behind `current`.
        assoc: [B, A, N] association marginals.
        observed: [B, N, D] the detections' values.
    Returns:
        [B, A, D] (evidence * current + sum_n assoc * observed) / (evidence + sum_n assoc):
        a convex combination, so probability rows stay on the simplex.
    """
    mass = assoc.sum(-1, keepdim=True)  # (B, A, 1)
    held = (evidence.unsqueeze(-1) + _EPS_WEIGHT) * current
    return (held + assoc @ observed) / (evidence.unsqueeze(-1) + _EPS_WEIGHT + mass)
