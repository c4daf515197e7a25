"""The decoder: for every agent and every latent value z, a Gaussian over controls at each future step.

Two control families are decoded side by side for every agent (no control flow
on the class): pedestrians' velocities (single integrator) and vehicles' and
cyclists' (yaw rate, acceleration) (unicycle). `prediction.model` integrates
both and blends them by class probability.

The decoder enumerates all K latent values in one batched pass: the agent
encoding and a learned embedding of z are summed and decoded by an MLP into
the whole T-step control sequence. Because steps are decoded jointly (not fed
back from samples), the controls given z are exactly Gaussian, which the
integration turns into exact (single integrator) or linearised (unicycle)
Gaussian positions.

A walker's deviation from its mean path persists: who walks a bit faster or
veers left keeps doing so. Pedestrians' velocities therefore carry, besides
noise independent at every step, a drift whose noise is drawn once per
trajectory; sampled paths are smooth instead of zig-zagging, and the training
likelihood is that of the whole path (`prediction.likelihood`), which is what
lets the model tell drift from per-step noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.mat2 import Mat2
from prediction.config import PredictorConfig
from prediction.encoders import mlp

PEDESTRIAN_PARAMS = 8  # mean 2; per-step noise: log std 2, correlation 1; drift: log std 2, correlation 1
VEHICLE_PARAMS = 5  # mean 2; per-step noise: log std 2, correlation 1
_MAX_CORRELATION = 0.95  # keeps every 2x2 covariance well conditioned
# Typical magnitudes that scale the raw outputs: m/s for a pedestrian's velocity change,
# rad/s and m/s^2 for a vehicle's yaw rate and acceleration.
PEDESTRIAN_SCALE = (1.0, 1.0)
VEHICLE_SCALE = (0.3, 2.0)


@dataclass(frozen=True)
class ControlGaussian:
    """Per-step control distributions `[B, A, K, T, 2]`.

    `chol [..., 2, 2]` factors the noise that is independent at every step;
    `shared_chol [..., 2, 2]` (pedestrians only, else None) factors a drift whose
    noise is drawn once per trajectory, so control k is `mean_k + chol_k eps_k +
    shared_chol_k eta` with eps_k, eta ~ N(0, I).
    """

    mean: Tensor
    chol: Tensor
    shared_chol: Tensor | None = None

    @property
    def cov(self) -> Tensor:
        factor = Mat2.of(self.chol)  # written out: a batched 2x2 MatMul is slow in onnxruntime (core.mat2)
        return factor.mm(factor.T).tensor()


def _factor(raw: Tensor, scale: Tensor, cfg: PredictorConfig) -> Tensor:
    """[..., 2, 2] lower factor from raw (log std 2, correlation 1): std by a floored and capped
    softplus, correlation by tanh."""
    std = (scale * F.softplus(raw[..., :2])).clamp(cfg.min_control_std, cfg.max_control_std)
    rho = _MAX_CORRELATION * torch.tanh(raw[..., 2])
    zero = torch.zeros_like(rho)
    s1, s2 = std[..., 0], std[..., 1]
    return torch.stack(
        (torch.stack((s1, zero), dim=-1), torch.stack((rho * s2, s2 * torch.sqrt(1 - rho * rho)), dim=-1)), dim=-2
    )


class ControlDecoder(nn.Module):
    """Agent encoding `[B, A, hidden]` -> (pedestrian, vehicle) `ControlGaussian`s over `[B, A, K, T]`."""

    def __init__(self, cfg: PredictorConfig):
        super().__init__()
        self.cfg = cfg
        width = cfg.decoder_hidden
        self.agent = nn.Linear(cfg.hidden, width)
        self.latent = nn.Embedding(cfg.latent, width)
        self.net = mlp([width, width, cfg.horizon * (PEDESTRIAN_PARAMS + VEHICLE_PARAMS)])
        self.register_buffer("pedestrian_scale", torch.tensor(PEDESTRIAN_SCALE), persistent=False)
        self.register_buffer("vehicle_scale", torch.tensor(VEHICLE_SCALE), persistent=False)

    def forward(self, x: Tensor, velocity_now: Tensor) -> tuple[ControlGaussian, ControlGaussian]:
        """`velocity_now [B, A, 2]` centres the pedestrians' velocities: the decoder predicts the change
        from constant velocity, the strongest simple prior for walking people."""
        cfg = self.cfg
        h = F.relu(self.agent(x)[:, :, None, :] + self.latent.weight)  # [B, A, K, W]
        raw = self.net(h).reshape(*h.shape[:3], cfg.horizon, PEDESTRIAN_PARAMS + VEHICLE_PARAMS)
        walk, drive = raw[..., :PEDESTRIAN_PARAMS], raw[..., PEDESTRIAN_PARAMS:]
        ped_scale, veh_scale = self.pedestrian_scale, self.vehicle_scale
        pedestrian = ControlGaussian(
            mean=velocity_now[:, :, None, None, :] + ped_scale * walk[..., :2],
            chol=_factor(walk[..., 2:5], ped_scale, cfg),
            shared_chol=_factor(walk[..., 5:8], ped_scale, cfg),
        )
        vehicle = ControlGaussian(mean=veh_scale * drive[..., :2], chol=_factor(drive[..., 2:5], veh_scale, cfg))
        return pedestrian, vehicle
