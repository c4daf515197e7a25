"""Probability that the ego's footprint meets an agent whose position is Gaussian.

Footprints are discs: the ego is covered by `EGO_CIRCLES` discs along its
length, an agent by one disc of its box's area, and two discs overlap when
their centres are closer than the sum of the radii. So the question per ego
disc, agent, mode and step is P(|x - c| < r) for x ~ N(mu, Sigma).

There is no closed form for a disc under a general Gaussian. The disc is
replaced by the square of the same area, aligned with the line from mu to c,
and Sigma by its variances along and across that line (its correlation in that
frame is dropped). Then the probability factorises into two 1-D Gaussian
interval probabilities (erf), which:

* is exact for that square when Sigma's axes align with the line,
* tends to the square's indicator as Sigma shrinks (no Gaussian tails
  inventing collisions with traffic in the next lane),
* is smooth in mu, Sigma and c, so the planning loss differentiates through it,
* uses only exportable elementwise ops.

A Monte Carlo test bounds its error against the disc.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# The ego (4.8 m x 2.0 m, `sim.policies.idm`) is covered by three discs along its length.
EGO_HALF_LENGTH = 2.4
EGO_HALF_WIDTH = 1.0
EGO_CIRCLES = 3
# Half-side of the square with the area of a disc of radius r: r sqrt(pi) / 2.
SQUARE_HALF_SIDE = math.sqrt(math.pi) / 2


def ego_circles(dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> tuple[Tensor, float]:
    """Offsets [EGO_CIRCLES] of the ego's covering discs along its heading (m, from the box centre)
    and their common radius (m), so that the discs cover the box."""
    spacing = 2 * EGO_HALF_LENGTH / EGO_CIRCLES
    offsets = (torch.arange(EGO_CIRCLES, dtype=dtype, device=device) - (EGO_CIRCLES - 1) / 2) * spacing
    return offsets, math.hypot(spacing / 2, EGO_HALF_WIDTH)


def equal_area_radius(size: Tensor) -> Tensor:
    """Radius [...] of the disc with the area of boxes `size [..., 2]` (length, width), m."""
    return torch.sqrt(size[..., 0] * size[..., 1] / math.pi)


def _interval(low: Tensor, high: Tensor, std: Tensor) -> Tensor:
    """P(low < z < high) for z ~ N(0, std^2)."""
    scale = 1.0 / (math.sqrt(2.0) * std)
    return 0.5 * (torch.erf(high * scale) - torch.erf(low * scale))


def disc_probability(centre: Tensor, mean: Tensor, cov: Tensor, radius: Tensor) -> Tensor:
    """P(|x - centre| < radius) for x ~ N(mean, cov), by the equal-area square (module docstring).

    Args:
        centre: [..., 2] disc centre, m.
        mean: [..., 2] Gaussian mean, m.
        cov: [..., 2, 2] SPD covariance, m^2.
        radius: [...] disc radius, m (> 0).

    All broadcast together; returns [...] in [0, 1].
    """
    offset = centre - mean
    distance = offset.norm(dim=-1)
    # Along the line from the mean to the centre; any direction will do when they coincide.
    along = offset / distance.clamp_min(1e-6).unsqueeze(-1)
    along = torch.where(distance.unsqueeze(-1) > 1e-6, along, torch.zeros_like(along) + along.new_tensor([1.0, 0.0]))
    across = torch.stack((-along[..., 1], along[..., 0]), dim=-1)
    std_along = _quadratic(cov, along).clamp_min(1e-12).sqrt()
    std_across = _quadratic(cov, across).clamp_min(1e-12).sqrt()
    half = SQUARE_HALF_SIDE * radius
    return _interval(distance - half, distance + half, std_along) * _interval(-half, half, std_across)


def _quadratic(cov: Tensor, u: Tensor) -> Tensor:
    """u^T cov u -> [...], written out: a broadcast matmul of 2x2 blocks copies far more than it computes."""
    u0, u1 = u[..., 0], u[..., 1]
    return cov[..., 0, 0] * u0 * u0 + 2.0 * cov[..., 0, 1] * u0 * u1 + cov[..., 1, 1] * u1 * u1


def first_hit_probability(step_probability: Tensor) -> Tensor:
    """P(the first collision happens at step t) [..., T] from per-step probabilities [..., T]
    that are independent across steps (as a `Forecast`'s steps are within a mode)."""
    miss = (1.0 - step_probability).clamp(0.0, 1.0)
    survived = torch.cumprod(torch.cat((torch.ones_like(miss[..., :1]), miss[..., :-1]), dim=-1), dim=-1)
    return step_probability * survived
