"""Soft data association: marginal probabilities that detection n belongs to track a.

Choice (documented here because it shapes everything downstream): the joint
association of JPDA/JIPDA, each track takes at most one detection and each
detection feeds at most one track, with the marginals approximated by loopy
belief propagation (Williams & Lau, "Approximate evaluation of marginal
association probabilities with belief propagation", IEEE TAES 2014). It is
exact for one track or one detection, accurate when tracks compete, converges
in a few sweeps, and is plain tensor algebra with a fixed sweep count, so it
is differentiable and exports. (A per-track softmax lets two tracks both take
one detection; Sinkhorn scaling takes the square root of the odds even for one
track and one detection.)

Hypothesis weights, relative to "track a missed" and "detection n unexplained":

    w[a, n] = P_D e_a e_n N(z_n; H x_a, H P_a H^T + R_n) / ((1 - P_D e_a) lambda)

with e_a the track's predicted existence, e_n the detection's existence, R_n
the detection's own position covariance and lambda the clutter density. The
derivation: a detection is real with probability e_n; a real detection that
no track explains is a new object (density e_n lambda), an unreal one a ghost
(density (1 - e_n) lambda), so "unexplained" has density lambda, and the
track hypothesis carries the factor e_n. A detection with existence 0 can
therefore never update or confirm a track.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# Likelihood ratios beyond exp(30) ~ 1e13 change no marginal in float32; the
# cap keeps the products in belief propagation far from overflow.
MAX_LOG_RATIO = 30.0


@dataclass(frozen=True)
class PairGeometry:
    """Innovation statistics of every (track, detection) pair.

    Attributes:
        innovation: [B, A, N, 2] z_n - H x_a, m.
        s_inv: [B, A, N, 2, 2] inverse innovation covariance, 1/m^2.
        whitened: [B, A, N, 2] S_an^-1 innovation, 1/m.
        log_likelihood: [B, A, N] log N(z_n; H x_a, S_an), log(1/m^2).
    """

    innovation: Tensor
    s_inv: Tensor
    whitened: Tensor
    log_likelihood: Tensor


@dataclass(frozen=True)
class Marginals:
    """Association marginals.

    Attributes:
        assoc: [B, A, N] probability that detection n is track a's.
        missed: [B, A] probability that no detection is track a's (1 - row sum).
        unexplained: [B, N] probability that detection n is no track's.
    """

    assoc: Tensor
    missed: Tensor
    unexplained: Tensor


def inverse_2x2(m: Tensor) -> tuple[Tensor, Tensor]:
    """Closed-form inverse and determinant of `m [..., 2, 2]` (exports without a linalg op)."""
    a, b, c, d = m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1]
    det = a * d - b * c
    adj = torch.stack((torch.stack((d, -b), -1), torch.stack((-c, a), -1)), -2)
    return adj / det[..., None, None], det


def pair_geometry(track_pos: Tensor, track_pos_cov: Tensor, det_pos: Tensor, det_pos_cov: Tensor) -> PairGeometry:
    """Gaussian likelihood of each detection under each predicted track.

    Args:
        track_pos: [B, A, 2] predicted H x, m. track_pos_cov: [B, A, 2, 2] H P H^T.
        det_pos: [B, N, 2] z, m. det_pos_cov: [B, N, 2, 2] R, SPD.
    """
    innovation = det_pos.unsqueeze(1) - track_pos.unsqueeze(2)  # (B, A, N, 2)
    s = track_pos_cov.unsqueeze(2) + det_pos_cov.unsqueeze(1)  # (B, A, N, 2, 2)
    s_inv, det = inverse_2x2(s)
    # Elementwise 2x2 algebra: far faster than B*A*N tiny matmuls.
    whitened = (s_inv * innovation.unsqueeze(-2)).sum(-1)  # (B, A, N, 2)
    mahalanobis = (innovation * whitened).sum(-1)  # (B, A, N)
    log_likelihood = -0.5 * mahalanobis - math.log(2 * math.pi) - 0.5 * torch.log(det)
    return PairGeometry(innovation=innovation, s_inv=s_inv, whitened=whitened, log_likelihood=log_likelihood)


def hypothesis_weights(
    log_likelihood: Tensor,
    track_existence: Tensor,
    det_existence: Tensor,
    detection_prob: float,
    clutter_density: float,
) -> Tensor:
    """[B, A, N] weights w of "n is a's" against "a missed, n unexplained" (module docstring).

    Args:
        log_likelihood: [B, A, N]. track_existence: [B, A]. det_existence: [B, N], 0 for empty slots.
    """
    log_ratio = (log_likelihood - math.log(clutter_density)).clamp(max=MAX_LOG_RATIO)
    track_odds = detection_prob * track_existence / (1.0 - detection_prob * track_existence)  # (B, A)
    return track_odds.unsqueeze(2) * det_existence.unsqueeze(1) * torch.exp(log_ratio)


def _others(values: Tensor, dim: int) -> Tensor:
    """Sum over `dim` of every entry but the own one, as a matmul (no cancellation of sum - self)."""
    size = values.shape[dim]
    not_self = 1.0 - torch.eye(size, dtype=values.dtype, device=values.device)
    if dim == -1:
        return values @ not_self
    return not_self @ values


def association_marginals(weights: Tensor, iterations: int) -> Marginals:
    """Marginals of the one-to-one association with hypothesis `weights [B, A, N]` by belief propagation.

    Messages (Williams & Lau 2014): mu[a, n] from track a to
    detection n and nu[a, n] from detection n to track a,

        mu[a, n] = w[a, n] / (1 + sum_{n' != n} w[a, n'] nu[a, n'])
        nu[a, n] = 1 / (1 + sum_{a' != a} mu[a', n])
    """
    nu = torch.ones_like(weights)
    for _ in range(iterations):
        mu = weights / (1.0 + _others(weights * nu, dim=-1))  # (B, A, N)
        nu = 1.0 / (1.0 + _others(mu, dim=-2))  # (B, A, N)
    mu = weights / (1.0 + _others(weights * nu, dim=-1))
    track_side = weights * nu  # (B, A, N)
    row_total = 1.0 + track_side.sum(-1)  # (B, A)
    return Marginals(
        assoc=track_side / row_total.unsqueeze(-1),
        missed=1.0 / row_total,
        unexplained=1.0 / (1.0 + mu.sum(1)),
    )
