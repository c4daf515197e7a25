"""IDM speed profiles along each proposal path behind its leader (`sim.proposals.leader`)."""

from __future__ import annotations

import torch
from torch import Tensor

from sim.config import Timing
from sim.dynamics.driver import Driver, IdmSettings, idm_accel
from sim.proposals.config import EGO_HALF_LENGTH, NO_LEADER_GAP, ProposalConfig
from sim.proposals.leader import Leader


def follow(speed: Tensor, target: Tensor, leader: Leader, cfg: ProposalConfig, timing: Timing) -> tuple[Tensor, Tensor]:
    """Arc lengths and speeds [B, P, F, T] at the plan steps of IDM drivers starting at `speed [B]`, with
    desired speeds `target [B, P, F]`, behind the leader of their path (`leader`, [B, P, T])."""
    substeps = cfg.idm_substeps
    dt = timing.sample_dt / substeps
    driver = _driver(target, cfg)
    settings = IdmSettings(max_decel=cfg.max_decel)
    free_floor = -cfg.comfort_decel / cfg.max_accel
    s = torch.zeros_like(target)
    v = speed[:, None, None].expand_as(target)
    lengths, speeds = [], []
    for k in range(timing.horizon_steps * substeps):
        rear, lead_speed = _leader_at(leader, k * dt, timing)  # (B, P)
        gap = (rear[..., None] - s - EGO_HALF_LENGTH).clamp_min(0.0)
        has_leader = (rear < 0.5 * NO_LEADER_GAP)[..., None]
        closing = v - lead_speed[..., None].clamp_min(0.0)
        a = idm_accel(driver, v, gap, closing, has_leader, settings, free_floor)
        v_next = (v + a * dt).clamp_min(0.0)
        s = s + 0.5 * (v + v_next) * dt
        v = v_next
        if (k + 1) % substeps == 0:
            lengths.append(s)
            speeds.append(v)
    return torch.stack(lengths, -1), torch.stack(speeds, -1)


def _driver(target: Tensor, cfg: ProposalConfig) -> Driver:
    const = lambda value: torch.full_like(target, value)  # noqa: E731
    return Driver(target, const(cfg.time_headway), const(cfg.min_gap), const(cfg.max_accel), const(cfg.comfort_decel))


def _leader_at(leader: Leader, time: float, timing: Timing) -> tuple[Tensor, Tensor]:
    """The leader [B, P] at `time` s: linear between plan steps (extrapolated back before the first),
    the nearer step's where the leader appears or vanishes between them."""
    T = leader.rear.shape[-1]
    if T == 1:
        return leader.rear[..., 0], leader.speed[..., 0]
    position = time / timing.sample_dt - 1.0  # plan step index of `time`, a Python float
    low = min(max(int(position // 1), 0), T - 2)
    frac = position - low
    a, b = leader.rear[..., low], leader.rear[..., low + 1]
    nearer = a if frac < 0.5 else b
    both = torch.maximum(a, b) < 0.5 * NO_LEADER_GAP
    rear = torch.where(both, a + (b - a) * frac, nearer)
    speed = leader.speed[..., low] + (leader.speed[..., low + 1] - leader.speed[..., low]) * min(max(frac, 0.0), 1.0)
    speed = torch.where(both, speed, leader.speed[..., low] if frac < 0.5 else leader.speed[..., low + 1])
    return rear, speed
