"""Entropic risk of a discrete cost distribution, with sigma as a tensor input.

    R_sigma(J) = (1 / sigma) log E[exp(sigma J)]

sigma > 0 is risk-averse (R >= E[J], growing towards max J), sigma < 0
risk-seeking (towards min J), and sigma = 0 the expectation, its limit. The
log-sum-exp form keeps large `sigma * J` finite. Near sigma = 0 the division
by sigma loses precision, so there the second-order expansion
E[J] + sigma / 2 Var[J] is used instead; both branches are computed and one is
selected elementwise, so sigma stays a graph input (no data-dependent Python
control flow) and gradients are finite on both sides of the switch.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Below this |sigma| the expansion E + sigma Var / 2 replaces the log-sum-exp; its error is
# O(sigma^2 * third central moment), far below float32 resolution for costs of order 1-100.
SMALL_SIGMA = 1e-4


def check_sigma(sigma: Tensor | float, batch: int | None = None) -> Tensor:
    """`sigma` as a tensor, checked: finite, and a scalar or one value per batch element."""
    sigma = torch.as_tensor(sigma)
    if not sigma.is_floating_point():
        raise ValueError(f"sigma: expected a floating-point tensor, got dtype {sigma.dtype}")
    if sigma.dim() > 1 or (batch is not None and sigma.dim() == 1 and sigma.shape[0] not in (1, batch)):
        raise ValueError(f"sigma: expected a scalar or shape [B={batch}], got {tuple(sigma.shape)}")
    if not bool(torch.isfinite(sigma).all()):
        raise ValueError(f"sigma: expected finite values, got {sigma.tolist()}")
    return sigma


def entropic_risk(cost: Tensor, log_prob: Tensor, sigma: Tensor, dim: int = -1) -> Tensor:
    """R_sigma over outcomes along `dim`.

    Args:
        cost: [..., M, ...] cost of each outcome.
        log_prob: same shape (or broadcastable), log-probabilities of the outcomes,
            normalised along `dim` (-inf allowed for impossible outcomes).
        sigma: broadcastable to the result's shape (`cost` without `dim`).

    Returns:
        The risk, `cost`'s shape without `dim`.
    """
    cost, log_prob = torch.broadcast_tensors(cost, log_prob)
    dim = dim % cost.dim()
    prob = log_prob.exp()
    mean = (prob * cost).sum(dim)
    sigma = torch.as_tensor(sigma, dtype=cost.dtype, device=cost.device).expand(mean.shape)
    variance = (prob * (cost - mean.unsqueeze(dim)) ** 2).sum(dim)
    small = sigma.abs() < SMALL_SIGMA
    # The log-sum-exp branch divides by a sigma kept away from 0, so it never produces inf/NaN
    # (nor NaN gradients) where the expansion is the one selected.
    safe = torch.where(small, torch.full_like(sigma, 1.0), sigma)
    tilted = torch.logsumexp(log_prob + safe.unsqueeze(dim) * cost, dim) / safe
    return torch.where(small, mean + 0.5 * sigma * variance, tilted)


def with_existence(cost: Tensor, log_weights: Tensor, existence: Tensor) -> tuple[Tensor, Tensor]:
    """Outcomes of an agent that exists with probability `existence` and then follows one of K modes.

    Args:
        cost: [..., K] cost under each mode (the agent exists).
        log_weights: [..., K] log mode probabilities.
        existence: [...] probability that the agent is real.

    Returns:
        (cost [..., K + 1], log_prob [..., K + 1]): the K modes weighted by `existence`, then the
        outcome "not there" with cost 0 and probability 1 - existence.
    """
    eps = torch.finfo(cost.dtype).tiny
    exists = existence.clamp(0.0, 1.0)
    log_exists = torch.log(exists.clamp_min(eps)).unsqueeze(-1)
    log_absent = torch.log((1.0 - exists).clamp_min(eps)).unsqueeze(-1)
    outcomes = torch.cat((cost, torch.zeros_like(cost[..., :1])), dim=-1)
    return outcomes, torch.cat((log_weights + log_exists, log_absent), dim=-1)
