"""Cost terms of candidate trajectories, each normalised to be of order 1.

The collision term is random (it depends on which mode each agent follows and
whether it exists) and enters the entropic risk per agent; the others are
deterministic given the candidate. Agents are independent given the forecast,
and costs add over agents, so the risk of the sum is the sum of the per-agent
risks: R(J_ego + sum_a J_a) = J_ego + sum_a R(J_a), exactly, for every sigma.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from planning.collision import (
    EGO_HALF_LENGTH,
    EGO_HALF_WIDTH,
    box_probability,
    first_hit_probability,
    minkowski_half_sizes,
)
from planning.config import PlannerConfig
from planning.lattice import Candidates, constant
from sim.config import RasterConfig, Timing
from sim.types import SensorFrame


@dataclass(frozen=True)
class AgentFutures:
    """What the collision term reads about the other agents, ego frame.

    Attributes:
        means: [B, A, M, T, 2] centre position per outcome (mode or sample) and step, m.
        cov: [B, A, M, T, 2, 2] its covariance, m^2.
        heading: [B, A, M, T, 2] unit heading of the agent's motion (`motion_heading`).
        heading_trust: [B, A, M, T] in [0, 1], how much `heading` says (`motion_heading`).
        log_prob: [B, A, M] log-probability of each outcome given the agent exists.
        existence: [B, A] probability that the agent is real (0 for empty slots).
        size: [B, A, 2] box (length, width), m.
    """

    means: Tensor
    cov: Tensor
    heading: Tensor
    heading_trust: Tensor
    log_prob: Tensor
    existence: Tensor
    size: Tensor

    def select(self, index: Tensor) -> AgentFutures:
        """The agents `index [B, k]` (a gather along the agent axis of every field)."""
        return AgentFutures(**{name: _gather_agents(getattr(self, name), index) for name in self.__dataclass_fields__})


def _gather_agents(values: Tensor, index: Tensor) -> Tensor:
    """values[b, index[b, j]] for values [B, A, ...] -> [B, k, ...]."""
    shape = (*index.shape, *values.shape[2:])
    return values.gather(1, index.reshape(*index.shape, *([1] * (values.dim() - 2))).expand(shape))


def collision_costs(candidates: Candidates, agents: AgentFutures, cfg: PlannerConfig) -> Tensor:
    """Cost [B, C, A, M] of each candidate if agent a exists and follows outcome m.

    Per step, the probability that the ego's box meets the agent's
    (`planning.collision`), weighted by a discount (later contacts can still be
    avoided by replanning) and a severity 1 + `severity_gain` * ego speed. Over
    the horizon (`PlannerConfig.step_dependence`): the largest of these, since
    within a mode the predictor's positions come from integrated control noise
    and their errors persist from step to step; or, as if the steps were
    independent, the probability of a first contact at each step (noisy-OR).
    Agents that start behind the ego count only as much as they are not behind
    it (`behind_weight`): a collision they cause from behind is not the ego's to
    avoid, and counting it would make braking for a lead vehicle look dangerous.
    """
    ego_heading = torch.stack((torch.cos(candidates.yaw), torch.sin(candidates.yaw)), dim=-1)[:, :, None, None]
    offset = agents.means[:, None] - candidates.xy[:, :, None, None]  # (B, C, A, M, T, 2)
    along, across = minkowski_half_sizes(
        ego_heading,
        agents.heading[:, None],
        agents.heading_trust[:, None],
        agents.size[:, None, :, None, None],
        cfg.margin,
    )
    step = box_probability(offset, agents.cov[:, None], ego_heading, along, across)  # (B, C, A, M, T)
    T = step.shape[-1]
    discount = cfg.collision_discount ** torch.arange(T, dtype=step.dtype, device=step.device)
    severity = 1.0 + cfg.severity_gain * candidates.speed  # (B, C, T)
    weight = (discount * severity)[:, :, None, None]  # (B, C, 1, 1, T)
    if cfg.step_dependence == "independent":
        per_outcome = (first_hit_probability(step) * weight).sum(-1)
    else:
        per_outcome = (step * weight).amax(-1)
    return cfg.weights.collision * per_outcome * behind_weight(agents)[:, None, :, :]


def behind_weight(agents: AgentFutures, softness: float = 0.5) -> Tensor:
    """[B, A, M] ~1 for an agent whose first forecast position is ahead of the ego's rear, ~0 behind it."""
    front_of_agent = agents.means[..., 0, 0] + 0.5 * agents.size[..., None, 0]  # (B, A, M) x of its front
    return torch.sigmoid((front_of_agent + EGO_HALF_LENGTH) / softness)


def progress_cost(candidates: Candidates, frame: SensorFrame, timing: Timing, cfg: PlannerConfig) -> Tensor:
    """[B, C] minus the distance along the route as a fraction of what the speed limit allows."""
    reachable = (frame.speed_limit * timing.horizon_s).clamp_min(1.0)[:, None]
    return -cfg.weights.progress * candidates.s[..., -1] / reachable


def lane_cost(candidates: Candidates, cfg: PlannerConfig) -> Tensor:
    """[B, C] mean squared lateral offset from the route, in lane half-widths."""
    return cfg.weights.lane * (candidates.offset / cfg.lane_half_width).pow(2).mean(-1)


def comfort_cost(candidates: Candidates, timing: Timing, cfg: PlannerConfig) -> Tensor:
    """[B, C] mean squared longitudinal and lateral acceleration and jerk, in comfort units."""
    accel = candidates.accel
    lateral = candidates.speed.pow(2) * candidates.curvature
    # Differences by slicing, not torch.diff, which ONNX cannot express; the first step's jerk is from rest.
    previous = torch.cat((torch.zeros_like(accel[..., :1]), accel[..., :-1]), dim=-1)
    jerk = (accel - previous) / timing.sample_dt
    terms = (accel / cfg.comfort_accel).pow(2) + (lateral / cfg.comfort_accel).pow(2) + (jerk / cfg.comfort_jerk).pow(2)
    return cfg.weights.comfort * terms.mean(-1)


def speed_limit_cost(candidates: Candidates, frame: SensorFrame, cfg: PlannerConfig) -> Tensor:
    """[B, C] mean squared excess over the speed limit, in units of the limit."""
    limit = frame.speed_limit.clamp_min(1.0)[:, None, None]
    return cfg.weights.speed_limit * (F.relu(candidates.speed - limit) / limit).pow(2).mean(-1)


def drivable_cost(candidates: Candidates, frame: SensorFrame, raster: RasterConfig, cfg: PlannerConfig) -> Tensor:
    """[B, C] fraction of the ego's four corners, over the steps, outside the drivable area.

    The map raster is read bilinearly (`grid_sample`), so the term is smooth in
    the trajectory; points beyond the raster count as drivable (unmapped, not off-road).
    """
    heading = torch.stack((torch.cos(candidates.yaw), torch.sin(candidates.yaw)), dim=-1)
    left = torch.stack((-heading[..., 1], heading[..., 0]), dim=-1)
    signs = constant([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], candidates.xy)  # (4, 2)
    corners = (
        candidates.xy.unsqueeze(-2)
        + signs[:, :1] * EGO_HALF_LENGTH * heading.unsqueeze(-2)
        + signs[:, 1:] * EGO_HALF_WIDTH * left.unsqueeze(-2)
    )  # (B, C, T, 4, 2)
    drivable = sample_map(frame.map[:, :1], corners, raster)
    return cfg.weights.drivable * (1.0 - drivable).flatten(2).mean(-1)


def sample_map(channel: Tensor, xy: Tensor, raster: RasterConfig) -> Tensor:
    """Bilinear read of `channel [B, 1, H, W]` at ego-frame points `xy [B, ..., 2]` -> [B, ...];
    1 outside the raster (unmapped counts as drivable)."""
    H = raster.size
    # Raster row 0 is the far front; the ego sits at row ego_row_fraction * H, column W / 2.
    row = raster.ego_row_fraction * H - xy[..., 0] / raster.resolution
    col = 0.5 * H - xy[..., 1] / raster.resolution
    grid = torch.stack((col / (0.5 * H) - 1.0, row / (0.5 * H) - 1.0), dim=-1)  # align_corners=False units
    B = xy.shape[0]
    flat = grid.reshape(B, 1, -1, 2)
    inside = (grid.abs() <= 1.0).all(-1)
    value = F.grid_sample(channel, flat, mode="bilinear", padding_mode="border", align_corners=False)
    value = value.reshape(xy.shape[:-1])
    return torch.where(inside, value, torch.ones_like(value))
