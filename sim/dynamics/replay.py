"""Logged agents (behaviour REPLAY).

A REPLAY agent is at `log[step + 1]` after a step, exactly as recorded,
whatever the ego does (nuPlan's non-reactive agents); past the end of the log
it leaves the scene. Its speed and acceleration are backward differences of
the log: a step never reads a sample later than the one it moves to, so
nothing downstream can learn the future from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sim.state import WorldState


@dataclass(frozen=True)
class ReplayUpdate:
    """Next values [B, N] for REPLAY agents (meaningful only where behaviour is REPLAY)."""

    xy: Tensor
    yaw: Tensor
    speed: Tensor
    accel: Tensor
    valid: Tensor


def _at(values: Tensor, index: Tensor) -> Tensor:
    """values [B, N, TL, ...] at time index [B] -> [B, N, ...]."""
    B, N, TL = values.shape[:3]
    idx = index.reshape(B, 1, 1, *([1] * (values.dim() - 3))).expand(B, N, 1, *values.shape[3:])
    return torch.gather(values, 2, idx).squeeze(2)


def advance_replay(state: WorldState) -> ReplayUpdate:
    """Every agent read from the log at step + 1 (callers keep it only for REPLAY agents)."""
    log, dt = state.log, state.dt
    TL = log.valid.shape[2]
    now = state.step + 1  # (B,) the log index this step moves to
    index = now.clamp_max(TL - 1)
    before = (now - 1).clamp(0, TL - 1)
    xy, yaw = _at(log.xy, index), _at(log.yaw, index)
    valid = _at(log.valid, index) & (now < TL).unsqueeze(1)
    # Backward difference along the heading: needs this sample and the one before.
    moved = xy - _at(log.xy, before)
    along = moved[..., 0] * torch.cos(yaw) + moved[..., 1] * torch.sin(yaw)
    known = valid & _at(log.valid, before)
    speed = torch.where(known, along / dt, torch.zeros_like(along))
    # The current speed is the previous backward difference (or the initial state's).
    accel = torch.where(known & state.agents.valid, (speed - state.agents.speed) / dt, torch.zeros_like(along))
    return ReplayUpdate(xy=xy, yaw=yaw, speed=speed, accel=accel, valid=valid)
