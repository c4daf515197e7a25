"""Forecasts of agents driving along the ego's route bend with the road.

The predictor reads no lane geometry, so on a curve it extrapolates a car's
motion straight and forecasts it leaving its lane: a braking lead on a bend
then looks as if it drives off the road. Every forecast step is re-expressed
in the route's coordinates instead: its displacement from the first step,
taken along and across the route's direction there, becomes arc length and
lateral offset along the route, so the mode keeps what the predictor says
(speeding up, braking, drifting across lanes) and follows the road's curvature.
Each step's covariance turns with the road.

It applies in proportion to how well the outcome's motion lines up with the
route (fully within `FULL_ALIGNMENT`, not at all beyond `NO_ALIGNMENT`, either
direction, so oncoming traffic bends too), to its speed (a still agent has no
heading; `planning.collision`'s 1-3 m/s ramp) and only near the route
(`MAX_OFFSET`): crossing traffic, pedestrians on a crosswalk and anything far
from the route keep the predictor's forecast. Smooth in the forecast, so
gradients pass; elementwise and exportable.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor

from prediction.types import Forecast
from sim.proposals.route import offset_poses, to_route

FULL_ALIGNMENT = math.cos(math.radians(15.0))
NO_ALIGNMENT = math.cos(math.radians(35.0))
MAX_OFFSET = 9.0  # m from the route (two and a half lanes), fading out over the last 2 m
SLOW, FAST = 1.0, 3.0  # m/s: no heading below, a full one from


def follow_route(forecast: Forecast, route: Tensor, dt: float) -> Forecast:
    """`forecast` with the modes of agents moving along `route [B, R, 2]` (ego frame) bent to follow it."""
    means = forecast.means  # (B, A, K, T, 2)
    if means.shape[-2] < 2:
        return forecast
    first = means[..., 0, :]
    motion = means[..., 1, :] - first
    speed = motion.norm(dim=-1) / dt
    heading = motion / motion.norm(dim=-1, keepdim=True).clamp_min(1e-6)  # (B, A, K, 2)
    s0, d0, tangent = to_route(route, first)
    along = heading[..., 0] * torch.cos(tangent) + heading[..., 1] * torch.sin(tangent)
    weight = ((along.abs() - NO_ALIGNMENT) / (FULL_ALIGNMENT - NO_ALIGNMENT)).clamp(0.0, 1.0)
    weight = weight * ((speed - SLOW) / (FAST - SLOW)).clamp(0.0, 1.0) * ((MAX_OFFSET - d0.abs()) / 2.0).clamp(0.0, 1.0)
    offset = means - first[..., None, :]
    cos, sin = torch.cos(tangent)[..., None], torch.sin(tangent)[..., None]
    forward = offset[..., 0] * cos + offset[..., 1] * sin  # along the route's tangent at the first step
    left = cos * offset[..., 1] - sin * offset[..., 0]
    bent, road_yaw = offset_poses(route, s0[..., None] + forward, d0[..., None] + left, torch.zeros_like(forward))
    w = weight[..., None]  # (B, A, K, 1)
    turn = w * torch.atan2(torch.sin(road_yaw - tangent[..., None]), torch.cos(road_yaw - tangent[..., None]))
    return dataclasses.replace(forecast, means=means + w[..., None] * (bent - means),
                               chol=_rotated_cholesky(forecast.chol, turn))  # fmt: skip


def _rotated_cholesky(chol: Tensor, angle: Tensor) -> Tensor:
    """The lower Cholesky factor [..., 2, 2] of R L L^T R^T for rotations by `angle [...]`, written out."""
    c, s = torch.cos(angle), torch.sin(angle)
    l11, l21, l22 = chol[..., 0, 0], chol[..., 1, 0], chol[..., 1, 1]
    m11, m12 = c * l11 - s * l21, -s * l22  # M = R L
    m21, m22 = s * l11 + c * l21, c * l22
    a = m11 * m11 + m12 * m12  # M M^T
    b = m11 * m21 + m12 * m22
    d = m21 * m21 + m22 * m22
    n11 = a.clamp_min(1e-12).sqrt()
    n21 = b / n11
    n22 = (d - n21 * n21).clamp_min(1e-12).sqrt()
    zero = torch.zeros_like(n11)
    return torch.stack((torch.stack((n11, zero), -1), torch.stack((n21, n22), -1)), -2)
