"""The IDM leader of each proposal path, from the obstacles' outcomes, without thresholding them.

For a path (the route shifted by a lateral offset blended in over a ramp) and a
plan step, an outcome of an agent is in the path's corridor when its box comes
within `corridor_margin` of the ego's box centred on the path; one that moves
along the route and is in the corridor at the first step stays in it (the
forecast reads no lanes and would take a car on a bend out of its lane). Agents whose
front is behind the ego's rear now are left out (what they do behind the ego is
not the ego's to follow). Each agent's leader position is the rear of its box
along the route at the `leader_quantile` of its outcomes: the smallest rear
position r with P(agent exists, is in the corridor and its rear <= r) >= q. An
agent more likely absent or elsewhere than in the corridor is then no leader
(at q = 0.5), a sure one always is. The path's leader is the nearest agent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sim.ego import EGO_HALF_LENGTH, EGO_HALF_WIDTH
from sim.proposals.config import NO_LEADER_GAP
from sim.proposals.obstacles import Obstacles
from sim.proposals.route import ramped_offset, to_route
from sim.types import SensorFrame


@dataclass(frozen=True)
class Leader:
    """Per path and plan step, [B, P, T]: the leader's rear along the route, m (NO_LEADER_GAP when none),
    and its speed along the route, m/s."""

    rear: Tensor
    speed: Tensor


@dataclass(frozen=True)
class OnRoute:
    """Obstacles in route coordinates, [B, A, M, T] each."""

    s: Tensor
    lat: Tensor
    half_along: Tensor
    half_across: Tensor
    speed: Tensor
    crossing: Tensor


def on_route(frame: SensorFrame, obstacles: Obstacles, sample_dt: float) -> OnRoute:
    """Where each outcome lies along the route, its box's half extents along and across it, its speed
    along it, and whether it crosses or comes against the route (its heading, where known, more than
    60 degrees off the route's)."""
    s, lat, tangent = to_route(frame.route, obstacles.means)
    hx, hy = obstacles.heading[..., 0], obstacles.heading[..., 1]
    along = hx * torch.cos(tangent) + hy * torch.sin(tangent)
    cos, sin = along.abs(), (hy * torch.cos(tangent) - hx * torch.sin(tangent)).abs()
    trust = obstacles.heading_trust
    # An untrusted heading (a standing or slow agent) counts as along the route, in proportion to the distrust.
    crossing = trust * along + (1.0 - trust) < 0.5
    cos, sin = trust * cos + (1.0 - trust), trust * sin  # untrusted headings: aligned with the route
    half_length = 0.5 * obstacles.size[..., 0, None, None]
    half_width = 0.5 * obstacles.size[..., 1, None, None]
    return OnRoute(s, lat, cos * half_length + sin * half_width, sin * half_length + cos * half_width,
                   _rate(s, sample_dt), crossing)  # fmt: skip


def _rate(s: Tensor, dt: float) -> Tensor:
    """ds/dt [..., T] by differences between steps (central inside, one-sided at the ends), by slicing."""
    if s.shape[-1] < 2:
        return torch.zeros_like(s)
    inner = (s[..., 2:] - s[..., :-2]) / (2.0 * dt)
    first = (s[..., 1:2] - s[..., :1]) / dt
    last = (s[..., -1:] - s[..., -2:-1]) / dt
    return torch.cat((first, inner, last), dim=-1)


def leader_table(
    route: OnRoute,
    prob: Tensor,
    start: Tensor,
    offsets: Tensor,
    ramps: Tensor,
    quantile: float,
    margin: float,
    hold_steps: int = 0,
) -> Leader:
    """The leader of each path at each plan step; the paths blend from the ego's offset `start [B]` to
    `offsets [P]` (m) over `ramps [B, P]` (m).

    `route` from `on_route`, `prob [B, A, M]` the outcomes' probabilities. An outcome that crosses the
    route (or comes against it) holds the place where it is in the corridor for `hold_steps` plan steps
    before it gets there and after it has left: the IDM then waits before a conflict until the agent has
    passed with a gap, instead of following it through (gap acceptance).
    """
    s = route.s[:, None]  # (B, 1, A, M, T)
    path_lat, _ = ramped_offset(s, start[:, None, None, None, None], offsets[None, :, None, None, None],
                                ramps[:, :, None, None, None])  # fmt: skip
    reach = route.half_across[:, None] + EGO_HALF_WIDTH + margin
    inside = (route.lat[:, None] - path_lat).abs() < reach  # (B, P, A, M, T)
    # An outcome moving along the route that is in the corridor at the first step stays there: a
    # forecast that reads no lanes extrapolates a car on a bend straight out of its lane, and one that
    # truly leaves does so by the next plan.
    along = ~route.crossing[:, None, :, :, :1]
    inside = inside | (inside[..., :1] & along)
    # Where the outcome is now: its first plan step moved back by one step's motion (constant velocity).
    now = (2.0 * route.s[..., :1] - route.s[..., 1:2]) if route.s.shape[-1] > 1 else route.s[..., :1]
    starts_ahead = (now + route.half_along[..., :1]) > -EGO_HALF_LENGTH  # (B, A, M, 1)
    counts = inside & starts_ahead[:, None] & (prob > 0)[:, None, :, :, None]
    rear = torch.where(counts, (route.s - route.half_along)[:, None], torch.full_like(path_lat, NO_LEADER_GAP))
    rear, counts = _hold(rear, counts, route.crossing[:, None] & (prob > 0)[:, None, :, :, None], hold_steps)
    p = torch.where(counts, prob[:, None, :, :, None].expand_as(rear), torch.zeros_like(rear))
    # P(rear <= rear of outcome m) for each outcome m, over the agent's outcomes m': (B, P, A, M, M', T).
    below = (rear.unsqueeze(-3) <= rear.unsqueeze(-2)).to(p.dtype)
    cdf = (below * p.unsqueeze(-3)).sum(-2)  # (B, P, A, M, T)
    candidate = torch.where(cdf >= quantile, rear, torch.full_like(rear, NO_LEADER_GAP))
    per_agent, mode = candidate.min(dim=3)  # (B, P, A, T)
    speed = route.speed[:, None].expand_as(rear).gather(3, mode.unsqueeze(3)).select(3, 0)
    nearest, agent = per_agent.min(dim=2)  # (B, P, T)
    return Leader(nearest, speed.gather(2, agent.unsqueeze(2)).select(2, 0))


def _hold(rear: Tensor, counts: Tensor, crossing: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """`rear [..., T]` with each crossing outcome's place in the corridor (`counts`) also held for up to
    `steps` plan steps before it is there and after it has left (the nearest such step's place)."""
    held, where = rear, counts
    for k in range(1, steps + 1):
        later = torch.cat((rear[..., k:], torch.full_like(rear[..., :k], NO_LEADER_GAP)), dim=-1)
        earlier = torch.cat((torch.full_like(rear[..., :k], NO_LEADER_GAP), rear[..., :-k]), dim=-1)
        nearest = torch.minimum(later, earlier)
        fill = ~where & crossing & (nearest < 0.5 * NO_LEADER_GAP)
        held = torch.where(fill, nearest, held)
        where = where | fill
    return held, where
