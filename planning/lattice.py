"""Candidate ego trajectories along the route from two parameters each.

A candidate is theta = (target speed m/s, lateral offset m). Its speed profile
approaches the target with time constant `accel_time`, its acceleration
clamped to [-max_decel, max_accel] (a stop may brake up to `stop_decel`); its path follows the route centreline,
shifted left by the offset, blended in over `offset_ramp` m with a smoothstep
(a lane change when the offset is one lane width). Everything is a smooth or
piecewise-smooth function of theta, so the refinement's finite differences
and the planning loss's gradients see it.

Positions are the ego's box centre in the ego frame at the current time
(`sim.policies.base.PolicyOutput`'s convention); step t lies (t + 1) sample_dt ahead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from planning.config import PlannerConfig
from sim.config import Timing
from sim.geometry import interpolate_polyline
from sim.policies.route import route_arclength
from sim.types import SensorFrame

TARGET_SPEED = 0
OFFSET = 1
STOP_BLEND_SPEED = 2.0  # m/s: targets below it brake up to stop_decel


@dataclass(frozen=True)
class Candidates:
    """Rolled-out candidates, [B, C, T] unless noted.

    Attributes:
        xy: [B, C, T, 2] box-centre positions, m, ego frame.
        yaw: heading, rad, ego frame.
        speed: m/s.
        accel: longitudinal acceleration over each step, m/s^2.
        curvature: 1/m (left > 0).
        s: arc length along the route, m.
        offset: lateral offset from the route, m.
    """

    xy: Tensor
    yaw: Tensor
    speed: Tensor
    accel: Tensor
    curvature: Tensor
    s: Tensor
    offset: Tensor

    @property
    def poses(self) -> Tensor:
        """[B, C, T, 3] (x, y, yaw)."""
        return torch.cat((self.xy, self.yaw.unsqueeze(-1)), dim=-1)


def constant(values: Sequence[Any], like: Tensor) -> Tensor:
    """A small constant table (nested sequences of numbers) with `like`'s dtype and device, built from
    fill kernels: `torch.tensor(..., device="cuda")` copies from host memory, which a CUDA graph
    cannot capture. Exports to ONNX as a constant."""
    if isinstance(values, Sequence):
        return torch.stack([constant(v, like) for v in values])
    return like.new_full((), float(values))


def initial_parameters(frame: SensorFrame, cfg: PlannerConfig) -> Tensor:
    """The lattice: theta [B, C, 2], offset-major, fastest first within an offset."""
    fractions = constant(sorted(cfg.speed_fractions, reverse=True), frame.ego_speed)
    offsets = constant(cfg.lateral_offsets, frame.ego_speed)
    B, F, O = frame.ego_speed.shape[0], fractions.numel(), offsets.numel()
    speed = (frame.speed_limit[:, None, None] * fractions[None, None, :]).expand(B, O, F)
    offset = offsets[None, :, None].expand(B, O, F)
    return torch.stack((speed, offset), dim=-1).reshape(B, O * F, 2)


def speed_profile(v0: Tensor, target: Tensor, cfg: PlannerConfig, timing: Timing) -> tuple[Tensor, Tensor, Tensor]:
    """Speeds, mean accelerations and arc lengths [B, C, T] from the current speed `v0 [B]`."""
    dt = timing.sample_dt / cfg.substeps
    stopping = (1.0 - target / STOP_BLEND_SPEED).clamp(0.0, 1.0)  # 1 for a stop, 0 from 2 m/s
    decel = cfg.max_decel + (cfg.stop_decel - cfg.max_decel) * stopping
    max_accel = torch.full_like(target, cfg.max_accel)
    v = v0[:, None].expand_as(target)
    s = torch.zeros_like(target)
    speeds, accels, lengths = [], [], []
    for _ in range(timing.horizon_steps):
        start = v
        for _ in range(cfg.substeps):
            a = torch.maximum(torch.minimum((target - v) / cfg.accel_time, max_accel), -decel)
            v_next = (v + a * dt).clamp_min(0.0)
            s = s + 0.5 * (v + v_next) * dt
            v = v_next
        speeds.append(v)
        accels.append((v - start) / timing.sample_dt)
        lengths.append(s)
    return torch.stack(speeds, -1), torch.stack(accels, -1), torch.stack(lengths, -1)


def _smoothstep(x: Tensor) -> tuple[Tensor, Tensor]:
    """Value and derivative of 3x^2 - 2x^3 on [0, 1], constant outside."""
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x), 6.0 * x * (1.0 - x)


def rollout(frame: SensorFrame, theta: Tensor, cfg: PlannerConfig, timing: Timing) -> Candidates:
    """Candidates from parameters `theta [B, C, 2]`."""
    speed, accel, s = speed_profile(frame.ego_speed, theta[..., TARGET_SPEED], cfg, timing)
    blend, slope = _smoothstep(s / cfg.offset_ramp)
    offset = theta[..., OFFSET].unsqueeze(-1) * blend  # (B, C, T)
    d_offset = theta[..., OFFSET].unsqueeze(-1) * slope / cfg.offset_ramp  # d offset / d s
    route_s = route_arclength(frame)  # (B, R)
    B, C, T = s.shape
    pts = frame.route[:, None].expand(B, C * T, *frame.route.shape[1:])
    table = route_s[:, None].expand(B, C * T, route_s.shape[-1])
    centre, route_yaw = interpolate_polyline(pts, table, s.reshape(B, C * T))
    route_yaw = route_yaw.reshape(B, C, T)
    normal = torch.stack((-torch.sin(route_yaw), torch.cos(route_yaw)), dim=-1)
    xy = centre.reshape(B, C, T, 2) + normal * offset.unsqueeze(-1)
    yaw = route_yaw + torch.atan(d_offset)
    curvature = _curvature(yaw, speed, timing)
    return Candidates(xy=xy, yaw=yaw, speed=speed, accel=accel, curvature=curvature, s=s, offset=offset)


def _curvature(yaw: Tensor, speed: Tensor, timing: Timing) -> Tensor:
    """Heading change per metre over each step [B, C, T] (the first from a zero heading now)."""
    previous = torch.cat((torch.zeros_like(yaw[..., :1]), yaw[..., :-1]), dim=-1)
    turn = torch.atan2(torch.sin(yaw - previous), torch.cos(yaw - previous))
    travelled = (speed * timing.sample_dt).clamp_min(0.05)
    return turn / travelled
