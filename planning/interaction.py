"""Costs that depend on the other agents, per proposal, agent and outcome: the random part of the risk.

Each is a probability that the ego's box meets an agent's, from the agent's
Gaussian position (`planning.collision`), on what the ego will drive
(`sim.proposals.Driven`):

* collision: the boxes meet at the same time, checked at the plan steps and
  halfway between them, discounted over time (later contacts can still be
  avoided by replanning), combined over the horizon as
  `PlannerConfig.step_dependence` says;
* headway: the agent is inside the ego's box stretched ahead by
  `time_to_collision` seconds of its speed (nuPlan's time-to-collision bound,
  PDM-Closed's TTC term): following too close, cutting in front;
* yielding: the agent reaches a place the ego occupied up to `yield_time`
  seconds after the ego was there (post-encroachment time): passing in front
  of a pedestrian about to cross, turning across oncoming traffic with too
  short a gap. Later arrivals count less (linearly to 0 at `yield_time`).

Agents that start behind the ego count only as much as they are not behind it
(`behind_weight`): what they do from behind is not the ego's to avoid.
"""

from __future__ import annotations

import torch
from torch import Tensor

from planning.agents import AgentFutures
from planning.collision import EGO_HALF_LENGTH, box_probability, first_hit_probability, minkowski_half_sizes
from planning.config import PlannerConfig
from sim.proposals import Driven
from sim.proposals.simulate import with_halfway


def interaction_costs(driven: Driven, agents: AgentFutures, cfg: PlannerConfig, dt: float) -> Tensor:
    """Cost [B, C, A, M] of each proposal if agent a exists and follows outcome m."""
    w = cfg.weights
    cost = w.collision * collision(driven, agents, cfg)
    if w.headway > 0:
        cost = cost + w.headway * headway(driven, agents, cfg)
    if w.yielding > 0 and cfg.yield_time > 0:
        cost = cost + w.yielding * yielding(driven, agents, cfg, dt)
    return cost * behind_weight(agents)[:, None]


def _ego(driven: Driven) -> tuple[Tensor, Tensor]:
    """Box centres [B, C, 1, 1, T, 2] and unit headings, broadcast over agents and outcomes."""
    heading = torch.stack((torch.cos(driven.yaw), torch.sin(driven.yaw)), dim=-1)
    return driven.xy[:, :, None, None], heading[:, :, None, None]


def _contact(ego_xy: Tensor, ego_heading: Tensor, agents: AgentFutures, means: Tensor, cov: Tensor,
             heading: Tensor, trust: Tensor, margin: float, stretch: Tensor | None = None) -> Tensor:  # fmt: skip
    """P(boxes meet) [B, C, A, M, T'] for ego poses [B, C, 1, 1, T', ...] and agent outcomes [B, 1, A, M, T', ...];
    `stretch` [B, C, 1, 1, T'] lengthens the ego's box ahead by that many metres."""
    along, across = minkowski_half_sizes(ego_heading, heading, trust, agents.size[:, None, :, None, None], margin)
    offset = means - ego_xy
    if stretch is not None:
        offset = offset - ego_heading * (0.5 * stretch).unsqueeze(-1)
        along = along + 0.5 * stretch
    return box_probability(offset, cov, ego_heading, along, across)


def collision(driven: Driven, agents: AgentFutures, cfg: PlannerConfig) -> Tensor:
    """[B, C, A, M] discounted probability of contact over the horizon, at twice the plan rate."""
    ego_xy, ego_heading = _ego(driven)
    ego_xy, ego_heading = with_halfway(ego_xy, -2), _unit(with_halfway(ego_heading, -2))
    means, cov = with_halfway(agents.means, -2), with_halfway(agents.cov, -3)
    heading, trust = _unit(with_halfway(agents.heading, -2)), with_halfway(agents.heading_trust, -1)
    step = _contact(ego_xy, ego_heading, agents, means[:, None], cov[:, None], heading[:, None], trust[:, None],
                    cfg.margin)  # fmt: skip
    T2 = step.shape[-1]
    discount = cfg.collision_discount ** (0.5 * (torch.arange(T2, dtype=step.dtype, device=step.device) + 1))
    if cfg.step_dependence == "independent":
        return (first_hit_probability(step) * discount).sum(-1)
    return (step * discount).amax(-1)


def headway(driven: Driven, agents: AgentFutures, cfg: PlannerConfig) -> Tensor:
    """[B, C, A, M] the largest probability over the plan steps that the agent is within
    `time_to_collision` seconds of travel ahead of the ego."""
    ego_xy, ego_heading = _ego(driven)
    stretch = (driven.speed * cfg.time_to_collision)[:, :, None, None]
    step = _contact(ego_xy, ego_heading, agents, agents.means[:, None], agents.cov[:, None],
                    agents.heading[:, None], agents.heading_trust[:, None], cfg.margin, stretch)  # fmt: skip
    return (step * _discount(step, cfg)).amax(-1)


def yielding(driven: Driven, agents: AgentFutures, cfg: PlannerConfig, dt: float) -> Tensor:
    """[B, C, A, M] the largest probability, over plan steps t and delays k, that the agent is at step
    t + k where the ego was at step t, weighted 1 - (k - 1) / K for K = the delays within `yield_time`."""
    T = driven.xy.shape[2]
    K = min(max(round(cfg.yield_time / dt), 1), T - 1)
    ego_xy, ego_heading = _ego(driven)
    worst = torch.zeros_like(agents.means[:, None, ..., 0, 0]).expand(-1, driven.xy.shape[1], -1, -1)
    for k in range(1, K + 1):
        later = slice(k, T)
        at = (agents.means, agents.cov, agents.heading, agents.heading_trust)
        means, cov, heading, trust = (x[:, None, :, :, later] for x in at)
        step = _contact(ego_xy[..., : T - k, :], ego_heading[..., : T - k, :], agents, means, cov, heading, trust,
                        cfg.margin)  # fmt: skip
        weight = 1.0 - (k - 1) / K
        worst = torch.maximum(worst, weight * (step * _discount(step, cfg)).amax(-1))
    return worst


def behind_weight(agents: AgentFutures, softness: float = 0.5) -> Tensor:
    """[B, A, M] ~1 for an agent whose first forecast position is ahead of the ego's rear, ~0 behind it."""
    front_of_agent = agents.means[..., 0, 0] + 0.5 * agents.size[..., None, 0]  # (B, A, M) x of its front
    return torch.sigmoid((front_of_agent + EGO_HALF_LENGTH) / softness)


def _discount(step: Tensor, cfg: PlannerConfig) -> Tensor:
    return cfg.collision_discount ** (torch.arange(step.shape[-1], dtype=step.dtype, device=step.device) + 1)


def _unit(v: Tensor) -> Tensor:
    """Vectors [..., 2] scaled to length 1 (halfway headings are averages of two unit vectors)."""
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-6)
