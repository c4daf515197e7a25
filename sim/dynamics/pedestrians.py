"""Walking pedestrians (behaviour WALK).

A walker stands at `walk_from` until `start_time`, walks straight to `walk_to`
at `desired_speed`, pausing once for `pause_duration` when it has covered
`pause_at` of the distance (when `pause_at <= 1`), and stands at `walk_to`
once there. Its position is a closed-form function of the episode time, so it
carries no hidden state and cannot drift.

Pedestrians are not reactive in this version: they neither wait for the ego
nor for other agents; drivers react to them (they are obstacles for IDM).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sim.dynamics.lanes import heading_of
from sim.state import WorldState


@dataclass(frozen=True)
class WalkUpdate:
    """Next values [B, N] for WALK agents (meaningful only where behaviour is WALK)."""

    xy: Tensor
    yaw: Tensor
    speed: Tensor
    accel: Tensor


def walked(state: WorldState, time: Tensor) -> tuple[Tensor, Tensor]:
    """Distance walked [B, N] at episode `time [B]` s, and whether the walker is moving then."""
    p = state.params
    span = p.walk_to - p.walk_from
    total = torch.sqrt(span[..., 0] * span[..., 0] + span[..., 1] * span[..., 1])  # (B, N)
    speed = p.desired_speed
    elapsed = (time.unsqueeze(1) - p.start_time).clamp_min(0.0)  # (B, N) s since the start
    pauses = p.pause_at <= 1.0
    pause_point = p.pause_at.clamp(0.0, 1.0) * total
    reach_pause = pause_point / speed.clamp_min(1e-6)  # s of walking before the pause
    paused_for = (elapsed - reach_pause).clamp(min=0.0).minimum(p.pause_duration)
    walking_time = elapsed - torch.where(pauses, paused_for, torch.zeros_like(paused_for))
    distance = (speed * walking_time).minimum(total)
    in_pause = pauses & (elapsed >= reach_pause) & (elapsed < reach_pause + p.pause_duration)
    moving = (time.unsqueeze(1) >= p.start_time) & (distance < total) & ~in_pause & (speed > 0)
    return distance, moving


def advance_walkers(state: WorldState) -> WalkUpdate:
    """Every agent as a walker at the next step's time (callers keep it only for WALK agents)."""
    p = state.params
    next_time = (state.step + 1).to(state.agents.s.dtype) * state.dt  # (B,)
    distance, moving = walked(state, next_time)
    span = p.walk_to - p.walk_from
    total = torch.sqrt(span[..., 0] * span[..., 0] + span[..., 1] * span[..., 1])
    direction = span / total.clamp_min(1e-9).unsqueeze(-1)  # (B, N, 2)
    xy = p.walk_from + direction * distance.unsqueeze(-1)
    xy = torch.where((distance >= total).unsqueeze(-1), p.walk_to, xy)  # arrive exactly
    # Face the destination; a walker with nowhere to go keeps its heading.
    yaw = torch.where(total > 1e-6, heading_of(span[..., 0], span[..., 1]), state.agents.yaw)
    speed = torch.where(moving, p.desired_speed, torch.zeros_like(p.desired_speed))
    return WalkUpdate(xy=xy, yaw=yaw, speed=speed, accel=(speed - state.agents.speed) / state.dt)
