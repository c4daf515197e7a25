"""IDM speed profiles along each proposal path behind its leader (`sim.proposals.leader`)."""

from __future__ import annotations

import torch
from torch import Tensor

from core.config import Timing
from core.contracts import constant
from sim.dynamics.driver import Driver, IdmSettings, idm_accel
from sim.ego import EGO_HALF_LENGTH
from sim.proposals.config import NO_LEADER_GAP, ProposalConfig
from sim.proposals.leader import Leader


def follow(speed: Tensor, target: Tensor, leader: Leader, cfg: ProposalConfig, timing: Timing) -> tuple[Tensor, Tensor]:
    """Arc lengths and speeds [B, P, F, T] at the plan steps of IDM drivers starting at `speed [B]`, with
    desired speeds `target [B, P, F]`, behind the leader of their path (`leader`, [B, P, T])."""
    substeps = cfg.idm_substeps
    dt = timing.sample_dt / substeps
    n = timing.horizon_steps * substeps
    driver = _driver(target, cfg)
    settings = IdmSettings(max_decel=cfg.max_decel)
    free_floor = -cfg.comfort_decel / cfg.max_accel
    rear, lead_speed = _leader_at(leader, substeps)  # (B, P, n) each
    has_leader = rear < 0.5 * NO_LEADER_GAP
    s = torch.zeros_like(target)
    v = speed[:, None, None].expand_as(target)
    lengths, speeds = [], []
    for k in range(n):
        gap = (rear[..., k, None] - s - EGO_HALF_LENGTH).clamp_min(0.0)
        closing = v - lead_speed[..., k, None]
        a = idm_accel(driver, v, gap, closing, has_leader[..., k, None], settings, free_floor)
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


def _leader_at(leader: Leader, substeps: int) -> tuple[Tensor, Tensor]:
    """The leader's rear and speed [B, P, T * substeps] at times k sample_dt / substeps, k = 0, 1, ...:
    linear between plan steps (extrapolated back before the first), the nearer step's where the leader
    appears or vanishes between them. Static slicing and arithmetic."""
    T = leader.rear.shape[-1]
    if T == 1:
        shape = (*leader.rear.shape[:-1], substeps)
        return leader.rear.expand(shape), leader.speed.clamp_min(0.0).expand(shape)
    # Time k lies in the step interval m = k // substeps (step m - 1 to step m; before step 0, steps 0 to 1),
    # at fraction j / substeps of it, j = k % substeps.
    frac = constant([[j / substeps - (m == 0) for j in range(substeps)] for m in range(T)], leader.rear)  # (T, S)
    nearer_is_high = frac >= 0.5

    def spread(values: Tensor, interpolate: Tensor | None) -> tuple[Tensor, Tensor]:
        low = torch.cat((values[..., :1], values[..., :-1]), dim=-1)[..., None]  # (B, P, T, 1)
        high = torch.cat((values[..., 1:2], values[..., 1:]), dim=-1)[..., None]
        both = torch.maximum(low, high) < 0.5 * NO_LEADER_GAP if interpolate is None else interpolate
        nearer = torch.where(nearer_is_high, high, low)
        return torch.where(both, low + (high - low) * frac, nearer), both

    rear, both = spread(leader.rear, None)
    speed, _ = spread(leader.speed, both)
    return rear.flatten(-2), speed.flatten(-2).clamp_min(0.0)
