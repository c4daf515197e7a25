"""Honesty of position covariances: Gaussian NLL and sigma-ellipse coverage of matched objects.

For a 2-D Gaussian N(mu, S) the squared Mahalanobis distance d^2 of a true
sample is chi-squared with 2 degrees of freedom, so P(d^2 <= k^2) = 1 - exp(-k^2 / 2):
the 1-sigma ellipse should hold 39.3 % of the true centres, the 2-sigma one 86.5 %.
Too few inside means overconfident covariances, too many underconfident ones.
"""

from __future__ import annotations

import math

from torch import Tensor

# P(d^2 <= k^2) for a 2-D Gaussian, by ellipse size k in sigmas.
EXPECTED_COVERAGE = {1: 1.0 - math.exp(-0.5), 2: 1.0 - math.exp(-2.0)}


def mahalanobis_squared(x: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """(...) squared Mahalanobis distance of points (..., 2) under N(mean (..., 2), cov (..., 2, 2))."""
    dx, dy = (x - mean).unbind(-1)
    a, b, c = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]
    # Closed-form 2x2 inverse: [[c, -b], [-b, a]] / det.
    return (c * dx * dx - 2.0 * b * dx * dy + a * dy * dy) / (a * c - b * b)


def gaussian_nll_2d(x: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """(...) negative log density, nats, of points (..., 2) under N(mean, cov (..., 2, 2))."""
    log_det = (cov[..., 0, 0] * cov[..., 1, 1] - cov[..., 0, 1] * cov[..., 1, 0]).log()
    return 0.5 * mahalanobis_squared(x, mean, cov) + 0.5 * log_det + math.log(2.0 * math.pi)
