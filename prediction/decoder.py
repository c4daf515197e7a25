"""The decoder: for every agent and every latent value z, a Gaussian over controls at each future step.

Two control families are decoded side by side for every agent (no control flow
on the class): pedestrians' velocities (single integrator) and vehicles' and
cyclists' (yaw rate, acceleration) (unicycle). `prediction.model` integrates
both and blends them by class probability.

The decoder enumerates all K latent values in one batched pass: the agent
encoding and a learned embedding of z are summed and decoded by an MLP into
the whole T-step control sequence. Because steps are decoded jointly (not fed
back from samples), the control distribution given z is exactly the product of
the per-step Gaussians, which the integration turns into exact (single
integrator) or linearised (unicycle) Gaussian positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from prediction.config import PredictorConfig
from prediction.encoders import mlp

PARAMS_PER_FAMILY = 5  # mean 2, log std 2, correlation 1
_MAX_CORRELATION = 0.95  # keeps every 2x2 covariance well conditioned
# Typical magnitudes that scale the raw outputs: m/s for a pedestrian's velocity change,
# rad/s and m/s^2 for a vehicle's yaw rate and acceleration.
PEDESTRIAN_SCALE = (1.0, 1.0)
VEHICLE_SCALE = (0.3, 2.0)


@dataclass(frozen=True)
class ControlGaussian:
    """Per-step control distributions `[B, A, K, T, 2]` with their lower Cholesky factors `[..., 2, 2]`."""

    mean: Tensor
    chol: Tensor

    @property
    def cov(self) -> Tensor:
        return self.chol @ self.chol.transpose(-1, -2)


def _gaussian(raw: Tensor, scale: Tensor, base: Tensor, cfg: PredictorConfig) -> ControlGaussian:
    """Mean `base + scale * raw[..., :2]`; std from a softplus floored and capped; correlation by tanh."""
    mean = base + scale * raw[..., :2]
    std = (scale * F.softplus(raw[..., 2:4])).clamp(cfg.min_control_std, cfg.max_control_std)
    rho = _MAX_CORRELATION * torch.tanh(raw[..., 4])
    zero = torch.zeros_like(rho)
    s1, s2 = std[..., 0], std[..., 1]
    chol = torch.stack(
        (torch.stack((s1, zero), dim=-1), torch.stack((rho * s2, s2 * torch.sqrt(1 - rho * rho)), dim=-1)), dim=-2
    )
    return ControlGaussian(mean=mean, chol=chol)


class ControlDecoder(nn.Module):
    """Agent encoding `[B, A, hidden]` -> (pedestrian, vehicle) `ControlGaussian`s over `[B, A, K, T]`."""

    def __init__(self, cfg: PredictorConfig):
        super().__init__()
        self.cfg = cfg
        width = cfg.decoder_hidden
        self.agent = nn.Linear(cfg.hidden, width)
        self.latent = nn.Embedding(cfg.latent, width)
        self.net = mlp([width, width, cfg.horizon * 2 * PARAMS_PER_FAMILY])
        self.register_buffer("pedestrian_scale", torch.tensor(PEDESTRIAN_SCALE), persistent=False)
        self.register_buffer("vehicle_scale", torch.tensor(VEHICLE_SCALE), persistent=False)

    def forward(self, x: Tensor, velocity_now: Tensor) -> tuple[ControlGaussian, ControlGaussian]:
        """`velocity_now [B, A, 2]` centres the pedestrians' velocities: the decoder predicts the change
        from constant velocity, the strongest simple prior for walking people."""
        cfg = self.cfg
        h = F.relu(self.agent(x)[:, :, None, :] + self.latent.weight)  # [B, A, K, W]
        raw = self.net(h).reshape(*h.shape[:3], cfg.horizon, 2, PARAMS_PER_FAMILY)
        base = velocity_now[:, :, None, None, :]
        pedestrian = _gaussian(raw[..., 0, :], self.pedestrian_scale, base, cfg)
        vehicle = _gaussian(raw[..., 1, :], self.vehicle_scale, torch.zeros_like(base), cfg)
        return pedestrian, vehicle
