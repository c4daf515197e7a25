"""Soft suppression of duplicate tracks: one object the tracker follows twice.

The detector can put two slots on one object, and a slot the existing track
does not fully explain seeds a second track on top of the first; each then
keeps the other alive. Downstream, a planner would count the object twice.
So after every update, each track's existence is multiplied by the
probability that no more likely track is the same object:

    e_i <- e_i * prod_j (1 - [j dominates i] * e_j * exp(-d_ij^2 / (2 s^2)))

with d_ij the Mahalanobis distance between the two position estimates under
their combined covariance, s = `TrackerConfig.merge_scale`, and j dominating
i when it is more likely to exist (ties: the lower slot). Two estimates of
one object (d ~ 0-1) suppress each other strongly; two well-localised
pedestrians half a metre apart (d ~ 2-3) barely. It is soft non-maximum
suppression (Bodla et al., 2017) on tracks: no threshold, smooth in every
input, batched over all pairs, exportable.
"""

from __future__ import annotations

import torch
from torch import Tensor


def duplicate_suppression(position: Tensor, position_cov: Tensor, existence: Tensor, scale: float) -> Tensor:
    """[B, A] factor in (0, 1] for each track's existence.

    Args:
        position: [B, A, 2] track positions, m. position_cov: [B, A, 2, 2].
        existence: [B, A] (0 for empty slots, which then neither suppress nor are suppressed).
        scale: s above, > 0.
    """
    delta = position[:, :, None] - position[:, None]  # (B, A, A, 2): i minus j
    cov = position_cov[:, :, None] + position_cov[:, None]  # (B, A, A, 2, 2)
    a, b, c = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]
    det = (a * c - b * b).clamp_min(1e-12)
    dx, dy = delta[..., 0], delta[..., 1]
    d2 = (c * dx * dx - 2 * b * dx * dy + a * dy * dy) / det  # 2x2 inverse written out
    same_object = torch.exp(-0.5 * d2 / scale**2)  # (B, A, A)
    A = existence.shape[1]
    slot = torch.arange(A, device=existence.device)
    e_i, e_j = existence[:, :, None], existence[:, None, :]
    dominates = (e_j > e_i) | ((e_j == e_i) & (slot[None, None, :] < slot[None, :, None]))  # j over i
    pressure = torch.where(dominates, e_j * same_object, torch.zeros_like(same_object))
    return torch.prod(1.0 - pressure, dim=-1)
