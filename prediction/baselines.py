"""Constant-velocity baselines with the learned predictor's interface.

    model = ConstantVelocitySampled()
    samples = model.predict_positions(obs_xy, obs_valid, num_samples=20, seed=0)  # [S, A, 20, 12, 2]
    forecast = model.forecast(obs_xy, obs_valid)                                 # Forecast

Both extrapolate the last observed displacement: velocity is the backward
difference of the last two observed positions, computed from the past only.
Observations and predictions share the step `dt`, so step t (0-based) of the
future lies at `now + (t + 1) * (x_now - x_prev)`; when the previous position
was not observed the velocity is taken as 0 (the agent stays put), since one
point holds no direction.

`ConstantVelocitySampled` is CVM-S ("OUR-S") of Schöller et al., "What the
Constant Velocity Model Can Teach Us About Pedestrian Motion Prediction", RA-L
2020: each sample rotates the velocity by one angle drawn from N(0, sigma^2),
kept for the whole horizon. sigma = 25 degrees is `sample_angle_std = 25` in the
authors' `evaluate.py` (github.com/cschoeller/constant_velocity_pedestrian_motion).

Forecast uncertainty is not fitted: each mode's position std grows linearly in
time, `std_per_second * (t + 1) * dt` (default 0.25 m/s: 0.1 m after one step,
1.2 m at 4.8 s), isotropic and independent across steps as `Forecast` requires.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from prediction.inputs import check_observations
from prediction.types import Forecast
from prediction.windows import HORIZON, SAMPLE_DT
from sim.state import NUM_CLASSES, AgentKind

CVM_S_HEADING_STD_DEG = 25.0  # Schöller et al. 2020, evaluate.py: sample_angle_std = 25 (degrees)
DEFAULT_STD_PER_SECOND = 0.25  # m/s, growth of the forecast's position std (not fitted)


def last_displacement(obs_xy: Tensor, obs_valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(now [S, A, 2] m, step [S, A, 2] m per dt, valid_now [S, A] bool) from the last two steps.

    `step` is x_now - x_prev, 0 where either is unobserved. Unobserved positions
    are replaced by 0 first, so filler (even NaN) never reaches the output.
    """
    clean = torch.where(obs_valid[..., None], obs_xy, torch.zeros_like(obs_xy))
    now, prev = clean[:, :, -1], clean[:, :, -2]
    valid_now = obs_valid[:, :, -1]
    moving = valid_now & obs_valid[:, :, -2]
    step = torch.where(moving[..., None], now - prev, torch.zeros_like(now))
    return now, step, valid_now


def rotate(vector: Tensor, angle: Tensor) -> Tensor:
    """vector [..., 2] rotated counter-clockwise by angle [...] rad; angle 0 returns it exactly."""
    c, s = torch.cos(angle), torch.sin(angle)
    x, y = vector[..., 0], vector[..., 1]
    return torch.stack([c * x - s * y, s * x + c * y], dim=-1)


def extrapolate(now: Tensor, step: Tensor, angles: Tensor, horizon: int) -> Tensor:
    """[S, A, M, T, 2] paths: now + (t + 1) * step rotated by each of the M angles.

    now, step: [S, A, 2] m; angles: [S, A, M] or [M] rad.
    """
    turned = rotate(step[:, :, None], angles)  # [S, A, M, 2]
    k = torch.arange(1, horizon + 1, dtype=now.dtype, device=now.device)  # [T]
    return now[:, :, None, None] + turned[:, :, :, None] * k[:, None]


# -- models --------------------------------------------------------------
@dataclass(frozen=True)
class ConstantVelocity:
    """Deterministic constant-velocity extrapolation of the last observed displacement.

    Attributes:
        dt: s per step, of both the observations and the prediction.
        horizon: predicted steps.
        std_per_second: growth rate of the forecast's position std, m/s.
    """

    dt: float = SAMPLE_DT
    horizon: int = HORIZON
    std_per_second: float = DEFAULT_STD_PER_SECOND

    def __post_init__(self) -> None:
        if not self.dt > 0 or self.horizon < 1 or not self.std_per_second > 0:
            raise ValueError(
                f"{type(self).__name__}: expected dt > 0 s, horizon >= 1, std_per_second > 0 m/s, "
                f"got {self.dt}, {self.horizon}, {self.std_per_second}"
            )

    # Subclasses choose the headings; everything else is shared.
    def sample_angles(self, S: int, A: int, num_samples: int, generator: torch.Generator, like: Tensor) -> Tensor:
        """[S, A, N] rad, the heading change of each sample: none."""
        return torch.zeros(S, A, num_samples, dtype=like.dtype, device=like.device)

    def mode_angles(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """(angles [K] rad, log_weights [K]) of the forecast's modes: one straight mode."""
        return torch.zeros(1, dtype=like.dtype, device=like.device), torch.zeros(1, dtype=like.dtype)

    def predict_positions(
        self, obs_xy: Tensor, obs_valid: Tensor, num_samples: int = 20, seed: int = 0, *,
        class_probs: Tensor | None = None, size: Tensor | None = None, lanes: Tensor | None = None,
        lanes_valid: Tensor | None = None,
    ) -> Tensor:  # fmt: skip
        """Sampled futures [S, A, num_samples, horizon, 2], m, frame of obs_xy; 0 for agents absent now.

        Args:
            obs_xy: [S, A, H, 2] float, observed positions, m (step H - 1 is now).
            obs_valid: [S, A, H] bool, the position was observed.
            num_samples: N >= 1 paths per agent.
            seed: seeds the torch.Generator the samples are drawn from.
            class_probs, size, lanes, lanes_valid: the agents' classes and boxes, the lanes near them;
                constant velocity reads none of them.
        """
        check_observations(obs_xy, obs_valid, min_history=2)
        if num_samples < 1:
            raise ValueError(f"num_samples: expected >= 1, got {num_samples}")
        S, A = obs_valid.shape[:2]
        now, step, valid_now = last_displacement(obs_xy, obs_valid)
        generator = torch.Generator(device=obs_xy.device).manual_seed(seed)
        angles = self.sample_angles(S, A, num_samples, generator, obs_xy)
        paths = extrapolate(now, step, angles, self.horizon)  # [S, A, N, T, 2]
        return torch.where(valid_now[:, :, None, None, None], paths, torch.zeros_like(paths))

    def forecast(
        self, obs_xy: Tensor, obs_valid: Tensor, *, class_probs: Tensor | None = None, size: Tensor | None = None,
        lanes: Tensor | None = None, lanes_valid: Tensor | None = None,
    ) -> Forecast:  # fmt: skip
        """Gaussian-mixture forecast in the frame of obs_xy: one mode per `mode_angles`,
        isotropic std `std_per_second * (t + 1) * dt`; agents present now are valid with
        existence 1, of `class_probs` (pedestrians if None). `size` and the lanes are not read."""
        check_observations(obs_xy, obs_valid, min_history=2)
        now, step, valid_now = last_displacement(obs_xy, obs_valid)
        angles, log_weights = self.mode_angles(obs_xy)
        means = extrapolate(now, step, angles, self.horizon)  # [S, A, K, T, 2]
        S, A, K = means.shape[:3]
        seconds = torch.arange(1, self.horizon + 1, dtype=obs_xy.dtype, device=obs_xy.device) * self.dt
        std = self.std_per_second * seconds  # [T]
        eye = torch.eye(2, dtype=obs_xy.dtype, device=obs_xy.device)
        if class_probs is None:
            class_probs = torch.zeros(NUM_CLASSES, dtype=obs_xy.dtype, device=obs_xy.device)
            class_probs[AgentKind.PEDESTRIAN] = 1.0
        return Forecast(
            log_weights=log_weights.to(obs_xy.device).expand(S, A, K).contiguous(),
            means=torch.where(valid_now[:, :, None, None, None], means, torch.zeros_like(means)),
            chol=(std[:, None, None] * eye).expand(S, A, K, self.horizon, 2, 2).contiguous(),
            existence=valid_now.to(obs_xy.dtype),
            class_probs=class_probs.to(obs_xy).expand(S, A, NUM_CLASSES).contiguous(),
            valid=valid_now.clone(),
        )


@dataclass(frozen=True)
class ConstantVelocitySampled(ConstantVelocity):
    """CVM-S: constant velocity with the heading of each sample rotated by N(0, heading_std^2).

    Attributes:
        heading_std_deg: std of the heading change, degrees (Schöller et al.: 25).
        num_modes: K modes of `forecast`: headings at the midpoints of K equal-probability
            bins of N(0, heading_std^2), i.e. the quantiles (k + 0.5) / K, equal weights.
            A deterministic, exactly normalised stand-in for the sampled headings; the
            spread within a bin is left to the per-mode position std.
    """

    heading_std_deg: float = CVM_S_HEADING_STD_DEG
    num_modes: int = 7

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.heading_std_deg >= 0 or self.num_modes < 1:
            raise ValueError(
                f"ConstantVelocitySampled: expected heading_std_deg >= 0 and num_modes >= 1, "
                f"got {self.heading_std_deg}, {self.num_modes}"
            )

    @property
    def heading_std(self) -> float:
        return math.radians(self.heading_std_deg)

    def sample_angles(self, S: int, A: int, num_samples: int, generator: torch.Generator, like: Tensor) -> Tensor:
        """[S, A, N] rad: one draw per sample and agent, held over the whole horizon."""
        noise = torch.randn(S, A, num_samples, generator=generator, dtype=like.dtype, device=like.device)
        return noise * self.heading_std

    def mode_angles(self, like: Tensor) -> tuple[Tensor, Tensor]:
        levels = (torch.arange(self.num_modes, dtype=torch.float64) + 0.5) / self.num_modes
        angles = torch.special.ndtri(levels) * self.heading_std
        # Equal weights tie; order the modes by |angle| so the most likely one (`Forecast.most_likely`
        # takes the first maximum) is the straight-ahead mode, the density's peak.
        angles = angles[torch.argsort(angles.abs(), stable=True)]
        log_weights = torch.full((self.num_modes,), -math.log(self.num_modes), dtype=like.dtype)
        return angles.to(dtype=like.dtype, device=like.device), log_weights
