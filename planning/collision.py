"""Probability that the ego's box meets an agent whose centre position is Gaussian.

Two boxes overlap when the agent's centre lies inside their Minkowski sum
around the ego's centre. For boxes that are both aligned with the ego's
heading that sum is the box of half-sizes (ego half-length + agent
half-length, ego half-width + agent half-width); for an agent turned by
delta relative to the ego, the sum is enclosed by the box whose half-sizes
add the agent's extent projected on the ego's axes,

    along  = L_e/2 + |cos delta| L_a/2 + |sin delta| W_a/2
    across = W_e/2 + |sin delta| L_a/2 + |cos delta| W_a/2,

exact at 0 and 90 degrees and conservative between. The agent's heading is
the direction of its forecast motion, trusted in proportion to its speed
(none below 1 m/s, fully from 3 m/s): the motion of a parked car is tracker
noise, and such an agent is taken as aligned with the ego, as traffic
beside a lane is.

With the agent's centre x ~ N(mu, Sigma), the probability that x lies in
that box factorises into two 1-D Gaussian interval probabilities (erf) once
Sigma's correlation in the ego's axes is dropped. This

* is exact for an axis-aligned Sigma,
* tends to the box's indicator as Sigma shrinks (no Gaussian tails inventing
  collisions with traffic in the next lane or a car parked beside the lane),
* is smooth in mu, Sigma and the ego's pose, so the planning loss
  differentiates through it, with exportable elementwise ops only.

A Monte Carlo test bounds its error for correlated Sigma.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sim.ego import EGO_HALF_LENGTH, EGO_HALF_WIDTH

# An agent's motion gives its heading from HEADING_MIN_SPEED (not at all) to HEADING_FULL_SPEED (fully), m/s:
# below, the motion of a still object is tracker noise (a parked car "moving" at 0.3-1 m/s in any direction).
HEADING_MIN_SPEED = 1.0
HEADING_FULL_SPEED = 3.0


def _interval(low: Tensor, high: Tensor, std: Tensor) -> Tensor:
    """P(low < z < high) for z ~ N(0, std^2)."""
    scale = 1.0 / (math.sqrt(2.0) * std)
    return 0.5 * (torch.erf(high * scale) - torch.erf(low * scale))


def box_probability(offset: Tensor, cov: Tensor, heading: Tensor, half_along: Tensor, half_across: Tensor) -> Tensor:
    """P(x - ego centre lies in the box) for x ~ N(ego centre + offset, cov).

    Args:
        offset: [..., 2] mean of the agent's centre minus the ego's centre, m.
        cov: [..., 2, 2] SPD covariance of the agent's centre, m^2.
        heading: [..., 2] unit vector of the ego's heading (the box's long axis).
        half_along, half_across: [...] half-sizes of the box along and across the heading, m.

    All broadcast together; returns [...] in [0, 1].
    """
    hx, hy = heading[..., 0], heading[..., 1]
    ox, oy = offset[..., 0], offset[..., 1]
    along = ox * hx + oy * hy
    across = oy * hx - ox * hy
    # u^T cov u for u = heading and its left normal, written out with the heading's products first: the
    # heading usually has far fewer elements than the covariance it is broadcast against.
    hxx, hxy2, hyy = hx * hx, 2.0 * hx * hy, hy * hy
    cxx, cxy, cyy = cov[..., 0, 0], cov[..., 0, 1], cov[..., 1, 1]
    std_along = (cxx * hxx + cxy * hxy2 + cyy * hyy).clamp_min(1e-12).sqrt()
    std_across = (cxx * hyy - cxy * hxy2 + cyy * hxx).clamp_min(1e-12).sqrt()
    return _interval(-half_along - along, half_along - along, std_along) * _interval(
        -half_across - across, half_across - across, std_across
    )


def _dot(u: Tensor, v: Tensor) -> Tensor:
    """u . v over the last axis (2), written out: a reduction over an axis of two runs slowly in onnxruntime."""
    return u[..., 0] * v[..., 0] + u[..., 1] * v[..., 1]


def motion_heading(means: Tensor, dt: float) -> tuple[Tensor, Tensor]:
    """Unit heading [..., T, 2] of forecast positions `means [..., T, 2]` (from the step before; the first
    step from the second) and how much to trust it [..., T] in [0, 1], from the speed (module docstring)."""
    step = means[..., 1:, :] - means[..., :-1, :]  # (..., T-1, 2); slicing, since ONNX has no diff
    step = torch.cat((step[..., :1, :], step), dim=-2)
    length = step.norm(dim=-1)
    trust = ((length / dt - HEADING_MIN_SPEED) / (HEADING_FULL_SPEED - HEADING_MIN_SPEED)).clamp(0.0, 1.0)
    unit = step / length.clamp_min(1e-6).unsqueeze(-1)
    return unit, trust


def minkowski_half_sizes(
    ego_heading: Tensor, agent_heading: Tensor, heading_trust: Tensor, agent_size: Tensor, margin: float
) -> tuple[Tensor, Tensor]:
    """Half-sizes (along, across the ego's heading) of the box enclosing ego + agent, m.

    Args:
        ego_heading: [..., 2] unit. agent_heading: [..., 2] unit. heading_trust: [...] in [0, 1]: 1 uses
            the agent's heading, 0 takes the agent as aligned with the ego, between blends the two.
        agent_size: [..., 2] (length, width), m.
        margin: added to both half-sizes, m.
    """
    cos = _dot(ego_heading, agent_heading).abs()
    sin = (ego_heading[..., 0] * agent_heading[..., 1] - ego_heading[..., 1] * agent_heading[..., 0]).abs()
    cos = heading_trust * cos + (1.0 - heading_trust)
    sin = heading_trust * sin
    half_length, half_width = 0.5 * agent_size[..., 0], 0.5 * agent_size[..., 1]
    along = EGO_HALF_LENGTH + cos * half_length + sin * half_width + margin
    across = EGO_HALF_WIDTH + sin * half_length + cos * half_width + margin
    return along, across


def first_hit_probability(step_probability: Tensor) -> Tensor:
    """P(the first collision happens at step t) [..., T] from per-step probabilities [..., T]
    that are independent across steps (as a `Forecast`'s steps are within a mode)."""
    miss = (1.0 - step_probability).clamp(0.0, 1.0)
    # A running product unrolled over the static horizon: ONNX has no cumprod, and exp(cumsum(log))
    # would put log(0) into the gradient where a step is a sure hit.
    survived = [torch.ones_like(miss[..., 0])]
    for t in range(miss.shape[-1] - 1):
        survived.append(survived[-1] * miss[..., t])
    return step_probability * torch.stack(survived, dim=-1)
