"""The planner's view of the other agents: every outcome of every agent's forecast, never thresholded."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from core.mat2 import Mat2
from planning.collision import motion_heading
from prediction.types import Forecast
from sim.proposals import Obstacles


@dataclass(frozen=True)
class AgentFutures:
    """Each agent's outcomes (forecast modes, or samples), ego frame now.

    Attributes:
        means: [B, A, M, T, 2] centre position per outcome and step, m.
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

    def obstacles(self) -> Obstacles:
        """The outcomes as the proposal generator reads them, each with probability existence x weight."""
        prob = self.existence[..., None] * self.log_prob.exp()
        return Obstacles(self.means, self.heading, self.heading_trust, self.size, prob)


def agent_futures(
    forecast: Forecast, size: Tensor, noise: tuple[Tensor, Tensor] | None, blur_std: float, dt: float
) -> AgentFutures:
    """The forecast's modes (or its samples from `noise`, each blurred by `blur_std` m) with their
    probabilities; `size [B, A, 2]` the agents' boxes."""
    log_weights, means, chol = forecast._safe()
    existence = torch.where(forecast.valid, forecast.existence, torch.zeros_like(forecast.existence))
    if noise is None:
        factor = Mat2.of(chol)
        cov = factor.mm(factor.T).tensor()
        log_prob = log_weights
    else:
        means = forecast.sample(*noise)  # (B, A, S, T, 2)
        S = means.shape[2]
        blur = blur_std**2 * torch.eye(2, dtype=means.dtype, device=means.device)
        cov = blur.expand(*means.shape[:-1], 2, 2)
        log_prob = torch.full(means.shape[:3], -math.log(S), dtype=means.dtype, device=means.device)
    heading, trust = motion_heading(means, dt)
    return AgentFutures(means, cov, heading, trust, log_prob, existence, size)


def near_route(agents: AgentFutures, route: Tensor, count: int) -> AgentFutures:
    """The `count` agents whose outcomes come closest to the ego's route ahead `route [B, R, 2]` (points
    every few metres; by their means, minus their half-diagonal): the proposals' leaders are looked for
    among them, so their cost does not grow with the tracker's slots. Top-k with the probabilities
    travelling along; agents with existence 0 rank last."""
    A = agents.means.shape[1]
    if count >= A:
        return agents
    with torch.no_grad():
        points = agents.means.flatten(2, 3)  # (B, A, M*T, 2)
        gap = points[:, :, :, None] - route[:, None, None]  # (B, A, M*T, R, 2)
        nearest = (gap[..., 0] ** 2 + gap[..., 1] ** 2).flatten(2).amin(-1).sqrt() - 0.5 * agents.size.norm(dim=-1)
        nearest = torch.where(agents.existence > 0, nearest, torch.full_like(nearest, float("inf")))
        index = torch.topk(nearest, count, dim=1, largest=False).indices  # (B, count)
    return agents.select(index)


def nearest_agents(agents: AgentFutures, xy: Tensor, count: int) -> AgentFutures:
    """The `count` agents that come closest to any of the ego's positions `xy [B, C, T, 2]` (by their
    outcome means, minus their half-diagonal), so the interaction terms scale with `count`, not the
    tracker's slots.

    Selecting agents is top-k with the probabilities travelling along (DESIGN.md): every selected
    agent keeps its whole distribution. Agents that cannot be real (existence 0) rank last.
    """
    A = agents.means.shape[1]
    if count >= A:
        return agents
    with torch.no_grad():
        gap = xy[:, :, None, None] - agents.means[:, None]  # (B, C, A, M, T, 2)
        # The square root after the minimum (it is monotonic): one per agent instead of one per point.
        nearest = (gap[..., 0] ** 2 + gap[..., 1] ** 2).flatten(3).amin(-1).amin(1).sqrt()  # (B, A)
        closest = nearest - 0.5 * agents.size.norm(dim=-1)
        closest = torch.where(agents.existence > 0, closest, torch.full_like(closest, float("inf")))
        index = torch.topk(closest, count, dim=1, largest=False).indices  # (B, count)
    return agents.select(index)


def _gather_agents(values: Tensor, index: Tensor) -> Tensor:
    """values[b, index[b, j]] for values [B, A, ...] -> [B, k, ...]."""
    shape = (*index.shape, *values.shape[2:])
    return values.gather(1, index.reshape(*index.shape, *([1] * (values.dim() - 2))).expand(shape))
