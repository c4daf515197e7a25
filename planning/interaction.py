"""Costs that depend on the other agents, per proposal, agent and outcome: the random part of the risk.

Each is a probability that the ego's box meets an agent's, from the agent's
Gaussian position (`planning.collision`), on what the ego will drive
(`sim.proposals.Driven`):

* collision: the boxes meet at the same time, checked at the plan steps and
  halfway between them (each step keeps the larger), discounted over time (later contacts can still be
  avoided by replanning), combined over the horizon as
  `PlannerConfig.step_dependence` says;
* headway: the agent is inside the ego's box stretched ahead by
  `time_to_collision` seconds of its speed (nuPlan's time-to-collision bound,
  PDM-Closed's TTC term): following too close, cutting in front;
* yielding: the agent reaches a place the ego occupied up to `yield_time`
  seconds after the ego was there (post-encroachment time): passing in front
  of a pedestrian about to cross, turning across oncoming traffic with too
  short a gap. Later arrivals count less: delay k of the K plan steps within
  `yield_time` is weighted 1 - (k - 1) / K (1, 2/3, 1/3 at the defaults).

What an agent does from behind is not the ego's to avoid, as the simulator's at-fault rule says (a
contact behind the ego's rear axle; the simulator also asks that the other closes in, which this leaves
out): a contact counts in the collision term only as much as the agent's centre is ahead of the ego's
rear axle at that step (`not_rear_weight`), so a follower closing in costs nothing while a car
overtaking in the next lane, which a merging or lane-changing ego would sideswipe, costs in full. The
headway and yielding terms count agents that start behind the ego only as much as they are not behind
it (`behind_weight`): a follower always reaches where the ego was.
"""

from __future__ import annotations

import torch
from torch import Tensor

from planning.agents import AgentFutures
from planning.collision import box_probability, first_hit_probability, minkowski_half_sizes
from planning.config import PlannerConfig
from sim.ego import EGO_HALF_LENGTH, EGO_REAR_AXLE
from sim.proposals import Driven
from sim.proposals.simulate import with_halfway


def interaction_costs(driven: Driven, agents: AgentFutures, cfg: PlannerConfig, dt: float) -> Tensor:
    """Cost [B, C, A, M] of each proposal if agent a exists and follows outcome m.

    The three terms' box probabilities are computed in one pass over the pairs (ego step, agent step)
    each needs, laid end to end along the time axis: collision at twice the plan rate (2T pairs),
    headway at the plan steps with the ego's box stretched (T), yielding at delays k = 1..K (T - k each).
    """
    w = cfg.weights
    T = driven.xy.shape[2]
    K = min(max(round(cfg.yield_time / dt), 1), T - 1) if w.yielding > 0 and cfg.yield_time > 0 else 0
    ego_xy, ego_heading = _ego(driven)  # (B, C, 1, 1, T, ...)
    at = (agents.means, agents.cov, agents.heading, agents.heading_trust)  # (B, A, M, T, ...)
    pairs = [_halfway_pairs(ego_xy, ego_heading, at), ((ego_xy, ego_heading), at)]
    pairs += [((ego_xy[..., : T - k, :], ego_heading[..., : T - k, :]), tuple(_later(x, k) for x in at))
              for k in range(1, K + 1)]  # fmt: skip
    lengths = [ego[0].shape[-2] for ego, _ in pairs]
    zeros = driven.speed.new_zeros(1).expand(*driven.speed.shape[:2], 1)
    stretch = [zeros.expand(-1, -1, n) for n in lengths]
    stretch[1] = driven.speed * cfg.time_to_collision  # the headway term's
    stretch = torch.cat(stretch, dim=-1)[:, :, None, None]
    ego = [torch.cat([p[0][n] for p in pairs], dim=-2) for n in range(2)]
    other = [torch.cat([p[1][n] for p in pairs], dim=_TIME_DIM[n]) for n in range(4)]
    step = _contact(ego[0], ego[1], agents, *(x[:, None] for x in other), cfg.margin, stretch)  # (B, C, A, M, L)
    parts = torch.split(step, lengths, dim=-1)
    severity = _severity(driven.speed, cfg)[:, :, None, None]  # (B, C, 1, 1, T)
    (ego_half_xy, ego_half_heading), agent_half = pairs[0]
    fault = not_rear_weight(ego_half_xy, ego_half_heading, agent_half[0][:, None])  # (B, C, A, M, 2T)
    cost = w.headway * (parts[1] * step_discount(parts[1], cfg)).amax(-1)
    if K:
        delayed = torch.stack([(1.0 - (k - 1) / K) * (parts[1 + k] * step_discount(parts[1 + k], cfg)).amax(-1)
                               for k in range(1, K + 1)], dim=-1)  # fmt: skip
        cost = cost + w.yielding * delayed.amax(-1)
    return w.collision * _combine_collision(parts[0], fault, severity, cfg) + cost * behind_weight(agents)[:, None]


# The time axis of means [..., T, 2], cov [..., T, 2, 2], heading [..., T, 2], heading_trust [..., T].
_TIME_DIM = (-2, -3, -2, -1)


def _later(values: Tensor, k: int) -> Tensor:
    """Agent steps k.. of a field (its time axis per `_TIME_DIM`)."""
    dim = {4: -1, 5: -2, 6: -3}[values.dim()]
    return values.narrow(dim, k, values.shape[dim] - k)


def _halfway_pairs(ego_xy: Tensor, ego_heading: Tensor, at: tuple[Tensor, ...]) -> tuple[tuple, tuple]:
    """Ego and agent poses at twice the plan rate (`with_halfway`), headings renormalised."""
    ego = (with_halfway(ego_xy, -2), _unit(with_halfway(ego_heading, -2)))
    means, cov, heading, trust = at
    agent = (with_halfway(means, -2), with_halfway(cov, -3), _unit(with_halfway(heading, -2)), with_halfway(trust, -1))
    return ego, agent


def _severity(speed: Tensor, cfg: PlannerConfig) -> Tensor:
    """What a contact costs at the ego's `speed`, in [standstill_severity, 1] (`PlannerConfig`)."""
    moving = (speed / cfg.severity_speed).clamp(0.0, 1.0)
    return cfg.standstill_severity + (1.0 - cfg.standstill_severity) * moving


def _combine_collision(step: Tensor, fault: Tensor, severity: Tensor, cfg: PlannerConfig) -> Tensor:
    """[B, C, A, M] from per-half-step contact probabilities [..., 2T], each plan step's weighted by how
    much a contact there is the ego's `fault [..., 2T]` (`not_rear_weight`) and its `severity [..., T]`,
    and discounted, over the horizon. The halfway checks only keep fast agents from passing through the
    ego between two plan steps: each plan step takes the larger of its own and the one halfway before it
    (and that one's fault), so checking twice as often does not double the chances a persistent near
    miss gets under the noisy-OR. Fault weighs the first contact, not the contact probability: a
    follower whose forecast runs through the ego hits its rear first, and what comes after is no event."""
    halfway_first = step[..., 0::2] >= step[..., 1::2]
    per_step = torch.where(halfway_first, step[..., 0::2], step[..., 1::2])  # (..., T)
    fault = torch.where(halfway_first, fault[..., 0::2], fault[..., 1::2])
    discount = step_discount(per_step, cfg) * severity * fault
    if cfg.step_dependence == "independent":
        return (first_hit_probability(per_step) * discount).sum(-1)
    return (per_step * discount).amax(-1)


def _ego(driven: Driven) -> tuple[Tensor, Tensor]:
    """Box centres [B, C, 1, 1, T, 2] and unit headings, broadcast over agents and outcomes."""
    heading = torch.stack((torch.cos(driven.yaw), torch.sin(driven.yaw)), dim=-1)
    return driven.xy[:, :, None, None], heading[:, :, None, None]


def _contact(ego_xy: Tensor, ego_heading: Tensor, agents: AgentFutures, means: Tensor, cov: Tensor,
             heading: Tensor, trust: Tensor, margin: float, stretch: Tensor) -> Tensor:  # fmt: skip
    """P(boxes meet) [B, C, A, M, L] for ego poses [B, C, 1, 1, L, ...] and agent outcomes [B, 1, A, M, L, ...];
    `stretch` [B, C, 1, 1, L] lengthens the ego's box ahead by that many metres."""
    along, across = minkowski_half_sizes(ego_heading, heading, trust, agents.size[:, None, :, None, None], margin)
    offset = means - ego_xy - ego_heading * (0.5 * stretch).unsqueeze(-1)
    return box_probability(offset, cov, ego_heading, along + 0.5 * stretch, across)


def not_rear_weight(ego_xy: Tensor, ego_heading: Tensor, means: Tensor, softness: float = 0.5) -> Tensor:
    """[B, C, A, M, L] ~1 where the agent's centre `means [B, 1, A, M, L, 2]` lies ahead of the rear axle of the
    ego at `ego_xy [B, C, 1, 1, L, 2]` heading `ego_heading`, ~0 behind it: a contact there is at the ego's rear."""
    along = ((means - ego_xy) * ego_heading).sum(-1)
    return torch.sigmoid((along + EGO_REAR_AXLE) / softness)


def behind_weight(agents: AgentFutures, softness: float = 0.5) -> Tensor:
    """[B, A, M] ~1 for an agent whose first forecast position is ahead of the ego's rear, ~0 behind it."""
    front_of_agent = agents.means[..., 0, 0] + 0.5 * agents.size[..., None, 0]  # (B, A, M) x of its front
    return torch.sigmoid((front_of_agent + EGO_HALF_LENGTH) / softness)


def step_discount(step: Tensor, cfg: PlannerConfig) -> Tensor:
    """[T] `collision_discount` ** (t + 1) over the last axis of `step` [..., T]: later steps count less, as
    replanning may still avoid them."""
    return cfg.collision_discount ** (torch.arange(step.shape[-1], dtype=step.dtype, device=step.device) + 1)


def _unit(v: Tensor) -> Tensor:
    """Vectors [..., 2] scaled to length 1 (halfway headings are averages of two unit vectors)."""
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-6)
