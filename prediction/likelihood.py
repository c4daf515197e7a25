"""Exact log-likelihood of a whole walked path under the pedestrian control model.

Given the latent value z, a pedestrian's future positions are

    y_t = p0 + dt * sum_{k<=t} (mu_k + L_k eps_k + S_k eta),   p0 ~ N(p0_mean, P0),

with eps_k, eta ~ N(0, I) (per-step noise and a drift drawn once per path,
`prediction.decoder`). The increments d_t = y_t - y_{t-1} (y_0 = p0_mean) are
then jointly Gaussian: independent blocks D_t = dt^2 L_t L_t^T (+ P0 for the
first) plus the rank-2 drift term B B^T with B_t = dt S_t. The density uses the
Woodbury identity and the matrix determinant lemma, so it costs 2x2 algebra
per step instead of a 2T x 2T factorisation:

    log det(D + B B^T) = sum_t log det D_t + log det M,   M = I + sum_t B_t^T D_t^-1 B_t
    r^T (D + B B^T)^-1 r = sum_t r_t^T D_t^-1 r_t - v^T M^-1 v,   v = sum_t B_t^T D_t^-1 r_t

Scoring whole paths (not each step's marginal alone) is what tells a
persistent drift apart from per-step noise: both give the same marginals, only
the joint differs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _inverse_2x2(m: Tensor) -> tuple[Tensor, Tensor]:
    """(inverse [..., 2, 2], log determinant [...]) of symmetric positive definite 2x2 matrices."""
    a, b, d = m[..., 0, 0], 0.5 * (m[..., 0, 1] + m[..., 1, 0]), m[..., 1, 1]
    det = (a * d - b * b).clamp_min(1e-12)
    inv = torch.stack((torch.stack((d, -b), -1), torch.stack((-b, a), -1)), -2) / det[..., None, None]
    return inv, det.log()


def observed_prefix(future_valid: Tensor) -> Tensor:
    """[..., T] bool: the steps before the first missing one. A path is scored up to where the agent
    leaves; increments across a hole would span two steps, so steps after a hole are not scored."""
    return torch.cumprod(future_valid.to(torch.int64), dim=-1).bool()


def path_log_prob(
    future: Tensor,
    scored: Tensor,
    pos0: Tensor,
    pos0_cov: Tensor,
    velocity: Tensor,
    step_chol: Tensor,
    shared_chol: Tensor,
    dt: float,
) -> Tensor:
    """log p(y_1..y_n | z) of the scored prefix of each path, for every latent value.

    Args:
        future: [B, A, T, 2] true positions, m.
        scored: [B, A, T] bool, a prefix mask (`observed_prefix`).
        pos0: [B, A, 2] mean current position, m; pos0_cov: [B, A, 2, 2] its covariance.
        velocity: [B, A, K, T, 2] mean velocities mu_k, m/s.
        step_chol: [B, A, K, T, 2, 2] per-step noise factors L_k, m/s.
        shared_chol: [B, A, K, T, 2, 2] drift factors S_k, m/s.
        dt: s per step.

    Returns:
        [B, A, K] log-density, nats (0 for a path with no scored step).
    """
    previous = torch.cat((pos0[:, :, None], future[:, :, :-1]), dim=2)
    mask = scored[:, :, None, :]  # [B, A, 1, T]
    residual = (future - previous)[:, :, None] - dt * velocity  # [B, A, K, T, 2]
    block = dt * dt * step_chol @ step_chol.transpose(-1, -2)
    first = torch.zeros_like(block)
    first[..., 0, :, :] = pos0_cov[:, :, None]  # the start's uncertainty enters the first increment only
    eye = torch.eye(2, dtype=block.dtype, device=block.device)
    block = torch.where(mask[..., None, None], block + first, eye)
    residual = torch.where(mask[..., None], residual, torch.zeros_like(residual))
    drift = torch.where(mask[..., None, None], dt * shared_chol, torch.zeros_like(shared_chol))
    inv, logdet = _inverse_2x2(block)  # [B, A, K, T, 2, 2], [B, A, K, T]
    weighted = drift.transpose(-1, -2) @ inv  # B_t^T D_t^-1
    m = eye + (weighted @ drift).sum(dim=-3)  # [B, A, K, 2, 2]
    v = (weighted @ residual[..., None]).sum(dim=-3)  # [B, A, K, 2, 1]
    m_inv, m_logdet = _inverse_2x2(m)
    quad = (residual[..., None, :] @ inv @ residual[..., None]).squeeze(-1).squeeze(-1)  # [B, A, K, T]
    quad = quad.sum(dim=-1) - (v.transpose(-1, -2) @ m_inv @ v).squeeze(-1).squeeze(-1)
    logdet = torch.where(mask, logdet, torch.zeros_like(logdet)).sum(dim=-1) + m_logdet
    steps = scored.sum(dim=-1).to(quad.dtype)[:, :, None]
    return -steps * math.log(2 * math.pi) - 0.5 * logdet - 0.5 * quad
