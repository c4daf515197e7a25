"""Costs of each proposal that do not depend on the other agents, each normalised to be of order 1.

They read what the ego will drive (`sim.proposals.Driven`) except the lane term,
which reads the reference's offset from the route, and the consistency term,
which compares references with the previous plan's. Agents enter through
`planning.interaction` and the entropic risk; since costs add over agents and
agents are independent given the forecast, the risk of the sum is these costs
plus the per-agent risks, exactly, for every sigma.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from core.contracts import constant
from planning.config import PlannerConfig
from planning.interaction import step_discount
from sim.config import RasterConfig
from sim.ego import EGO_HALF_LENGTH, EGO_HALF_WIDTH
from sim.proposals import Proposals
from sim.proposals.route import to_route
from sim.sensors.raster import read_map
from sim.types import SensorFrame

# nuPlan's comfort bounds (`sim.metrics`): longitudinal acceleration, jerk, lateral acceleration, yaw rate.
ACCEL_BOUNDS = (-4.05, 2.40)  # m/s^2
JERK_BOUND = 4.13  # m/s^3
LATERAL_BOUND = 4.89  # m/s^2
YAW_RATE_BOUND = 0.95  # rad/s
# Cost of a proposal that does not exist (a lane change without a lane, no previous plan): beyond any other.
MISSING = 100.0


def deterministic_costs(proposals: Proposals, frame: SensorFrame, cfg: PlannerConfig, raster: RasterConfig) -> Tensor:
    """[B, C] the sum of the terms below; proposals that do not exist cost `MISSING`."""
    cost = (
        progress_cost(proposals, frame, cfg)
        + lane_cost(proposals, cfg)
        + comfort_cost(proposals, cfg)
        + speed_limit_cost(proposals, frame, cfg)
        + drivable_cost(proposals, frame, raster, cfg)
    )
    if "previous" in proposals.kinds:
        cost = cost + consistency_cost(proposals, proposals.kinds.index("previous"), cfg)
    return torch.where(proposals.valid, cost, torch.full_like(cost, MISSING))


def progress_cost(proposals: Proposals, frame: SensorFrame, cfg: PlannerConfig) -> Tensor:
    """[B, C] the fraction of the best proposal's progress along the route not made (PDM-Closed's
    progress term), by what is driven."""
    s, _, _ = to_route(frame.route, proposals.driven.xy[:, :, -1])  # (B, C)
    best = torch.where(proposals.valid, s, torch.zeros_like(s)).amax(-1, keepdim=True).clamp_min(cfg.min_progress)
    return cfg.weights.progress * (1.0 - s / best).clamp(0.0, 1.0)


def lane_cost(proposals: Proposals, cfg: PlannerConfig) -> Tensor:
    """[B, C] mean squared lateral offset of the reference from the route, in lane half-widths."""
    return cfg.weights.lane * (proposals.offset / cfg.lane_half_width).pow(2).mean(-1)


def comfort_cost(proposals: Proposals, cfg: PlannerConfig) -> Tensor:
    """[B, C] mean squared acceleration, lateral acceleration and jerk in comfort units, plus the
    largest excess over nuPlan's comfort bounds relative to each bound."""
    d, w = proposals.driven, cfg.weights
    lateral = d.lateral_accel
    smooth = (d.accel / cfg.comfort_accel).pow(2) + (lateral / cfg.comfort_accel).pow(2)
    smooth = smooth + (d.jerk / cfg.comfort_jerk).pow(2)
    excess = (
        F.relu(d.accel - ACCEL_BOUNDS[1]) / ACCEL_BOUNDS[1]
        + F.relu(ACCEL_BOUNDS[0] - d.accel) / -ACCEL_BOUNDS[0]
        + F.relu(d.jerk - JERK_BOUND) / JERK_BOUND
        + F.relu(lateral.abs() - LATERAL_BOUND) / LATERAL_BOUND
        + F.relu(d.yaw_rate.abs() - YAW_RATE_BOUND) / YAW_RATE_BOUND
    )
    return w.comfort * smooth.mean(-1) + w.comfort_bounds * excess.amax(-1)


def speed_limit_cost(proposals: Proposals, frame: SensorFrame, cfg: PlannerConfig) -> Tensor:
    """[B, C] mean squared excess over the speed limit, in units of the limit."""
    limit = frame.speed_limit.clamp_min(1.0)[:, None, None]
    return cfg.weights.speed_limit * (F.relu(proposals.driven.speed - limit) / limit).pow(2).mean(-1)


def drivable_cost(proposals: Proposals, frame: SensorFrame, raster: RasterConfig, cfg: PlannerConfig) -> Tensor:
    """[B, C] how far the ego's worst corner lies outside the drivable area of the map raster (read
    bilinearly so the term is smooth; beyond the raster counts as drivable) at the worst step, discounted
    over time as collisions are. The worst step, not the mean: one corner off the road for one step
    fails an episode (nuPlan's drivable-area compliance multiplies the score), and a mean over the
    horizon's corners priced it like a 1 % chance of a collision."""
    d = proposals.driven
    heading = torch.stack((torch.cos(d.yaw), torch.sin(d.yaw)), dim=-1)
    left = torch.stack((-heading[..., 1], heading[..., 0]), dim=-1)
    signs = constant([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], d.xy)  # (4, 2)
    corners = (
        d.xy.unsqueeze(-2)
        + signs[:, :1] * EGO_HALF_LENGTH * heading.unsqueeze(-2)
        + signs[:, 1:] * EGO_HALF_WIDTH * left.unsqueeze(-2)
    )  # (B, C, T, 4, 2)
    off = (1.0 - read_map(frame.map[:, :1], corners, raster)).amax(-1)  # (B, C, T)
    return cfg.weights.drivable * (off * step_discount(off, cfg)).amax(-1)


def consistency_cost(proposals: Proposals, previous: int, cfg: PlannerConfig) -> Tensor:
    """[B, C] mean over the steps of the squared distance of each reference from the previous plan re-timed
    to now (proposal `previous`), in units of `consistency_scale`, each step's capped at 1; 0 where there
    is no previous plan. Switching plans costs a little (at most the weight), so near-ties do not make the
    plan chatter, and a stale plan never locks itself in."""
    xy = proposals.reference.xy
    gap = xy - xy[:, previous : previous + 1]  # (B, C, T, 2)
    cost = ((gap[..., 0] ** 2 + gap[..., 1] ** 2) / cfg.consistency_scale**2).clamp_max(1.0).mean(-1)
    return cfg.weights.consistency * cost * proposals.valid[:, previous : previous + 1].to(cost.dtype)
