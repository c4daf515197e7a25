"""Lane following with the Intelligent Driver Model (vehicles and cyclists).

An IDM agent drives along its `path` at arc length `s` with lateral offset `d`.
Its leader is the nearest obstacle ahead within a corridor around its own body,
found for all agents of all episodes at once (`neighbours.search`): every
other agent in the scene (pedestrians included) and the ego, which counts only
for agents with `params.yields_to_ego` - that is what makes an agent reactive.
Gaps are bumper to bumper along the follower's heading, which on curves
slightly underestimates them (conservative). Lane changes are decided by MOBIL
(`sim.dynamics.mobil`). Integration is semi-implicit Euler:
v' = max(v + a dt, 0), s' = s + v' dt; the pose then comes from the path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from sim.dynamics import lanes, mobil
from sim.dynamics.driver import DEFAULT_IDM, IdmSettings, agent_drivers, idm_accel, speed_along
from sim.dynamics.neighbours import Neighbour, Obstacles, Query, obstacles_of, search
from sim.state import Behaviour, WorldState

__all__ = ["DEFAULT_IDM", "IdmSettings", "IdmUpdate", "advance_idm", "idm_accel", "leaders", "settle_offset"]


@dataclass(frozen=True)
class IdmUpdate:
    """Next values [B, N] for IDM agents (meaningful only where behaviour is IDM)."""

    xy: Tensor
    yaw: Tensor
    speed: Tensor
    accel: Tensor
    path: Tensor
    s: Tensor
    d: Tensor
    lane_change_cooldown: Tensor


def settle_offset(d: Tensor, cooldown: Tensor, dt: float, settings: IdmSettings) -> Tensor:
    """Lateral offset after one step: a half-cosine from its value at the lane
    change to 0 over `change_duration` (smooth at both ends). The time since the
    change is `cooldown_setting - cooldown`; offsets with no change in progress
    (e.g. set by a builder) decay exponentially with time constant duration / 4."""
    duration = settings.change_duration

    def profile(t: Tensor) -> Tensor:  # 1 at the change, 0 after `duration`, flat at both ends
        return 0.5 * (1.0 + torch.cos(torch.pi * (t / duration).clamp(0.0, 1.0)))

    elapsed = settings.cooldown - cooldown  # (B, N) s since the last lane change
    ratio = profile(elapsed + dt) / profile(elapsed).clamp_min(1e-6)
    changing = elapsed < duration
    decay = torch.full_like(d, math.exp(-4.0 * dt / duration))
    return d * torch.where(changing, ratio, decay)


def _query(state: WorldState, here: lanes.PathPoint, options: mobil.LaneOptions | None, settings: IdmSettings) -> Query:
    agents = state.agents
    return Query(
        x=agents.xy[..., 0].contiguous(),
        y=agents.xy[..., 1].contiguous(),
        yaw=agents.yaw,
        curvature=lanes.curvature_at(state.map, here),
        half_length=0.5 * agents.length,
        body_half=0.5 * agents.width + settings.corridor_margin,
        reach=(agents.speed * settings.reach_time).clamp_min(settings.reach_min),
        sees_ego=state.params.yields_to_ego,
        target_shift=None if options is None else options.centre - agents.d,
        target_half=None if options is None else options.half_width,
    )


def leaders(state: WorldState, settings: IdmSettings = DEFAULT_IDM) -> Neighbour:
    """Every agent's leader as IDM sees it (nearest obstacle ahead in its corridor)."""
    here = lanes.locate(state.map, state.agents.path, state.agents.s)
    return search(_query(state, here, None, settings), obstacles_of(state)).leader


def advance_idm(state: WorldState, obstacles: Obstacles, settings: IdmSettings = DEFAULT_IDM) -> IdmUpdate:
    """One step of every agent as an IDM driver (callers keep it only for IDM agents)."""
    agents, dt = state.agents, state.dt
    here = lanes.locate(state.map, agents.path, agents.s)
    is_idm = (agents.behaviour == int(Behaviour.IDM)) & agents.valid
    options = mobil.options(state, is_idm, settings)
    found = search(_query(state, here, options, settings), obstacles)
    leader_speed = speed_along(obstacles, found.leader.index, agents.yaw)
    closing = agents.speed - leader_speed
    accel = idm_accel(agent_drivers(state), agents.speed, found.leader.gap, closing, found.leader.exists, settings)
    if options is None:
        change = mobil.keep_lane(state, accel)
    else:
        change = mobil.decide(state, obstacles, here, found, leader_speed, accel, options, settings)

    speed = (agents.speed + change.accel * dt).clamp_min(0.0)
    d = settle_offset(change.d, change.cooldown, dt, settings)
    s = change.s + speed * dt
    # Lane changes keep the point index, and s only grows: this step's segment is a hint.
    pose = lanes.pose_at(state.map, lanes.locate(state.map, change.path, s, hint=here.index), d)
    return IdmUpdate(
        xy=pose.xy,
        yaw=pose.yaw,
        speed=speed,
        accel=(speed - agents.speed) / dt,
        path=change.path,
        s=s,
        d=d,
        lane_change_cooldown=(change.cooldown - dt).clamp_min(0.0),
    )
