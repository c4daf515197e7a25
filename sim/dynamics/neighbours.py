"""Batched neighbour search: for every agent, the nearest obstacle ahead (its
leader) and, when lane changes are being considered, the nearest behind and the
nearest ahead and behind in the target lane, over all agents of its episode
plus the ego.

Pairs are `[B, N, M]` tensors (follower i, obstacle j; M = N + 1, the ego is
obstacle N), never `[B, N, N, P]`. On CPU they are processed in blocks of
episodes small enough to stay in cache (results are identical to one block:
every operation is elementwise or an exact min). Masks are float arithmetic
(`gt_`, `mul_`, `add_`) because torch's `where`/`masked_fill` with bool masks
run a scalar loop on CPU and would dominate the step time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sim.geometry import ego_center
from sim.state import WorldState

FAR = 1.0e6  # m; pushes excluded obstacles out of reach
AHEAD_EPS = 1.0e-3  # m; an obstacle must be this far ahead (or behind) to count, which excludes oneself
PAIRS_PER_BLOCK = 1 << 17  # pair elements per block on CPU (512 KiB per float tensor)


@dataclass(frozen=True)
class Obstacles:
    """Everything an agent may react to: the N agent slots, then the ego (slot N).

    Attributes:
        x, y: [B, M] box centres, m, world frame (contiguous rows broadcast
            faster than strided views of an xy tensor).
        yaw: [B, M] rad.
        speed: [B, M] m/s along the heading.
        half_length: [B, M] m.
        half_width: [B, M] m; -FAR for slots that are not in the scene, so no
            corridor ever contains them.
    """

    x: Tensor
    y: Tensor
    yaw: Tensor
    speed: Tensor
    half_length: Tensor
    half_width: Tensor

    @property
    def ego_slot(self) -> int:
        return self.yaw.shape[1] - 1


def obstacles_of(state: WorldState) -> Obstacles:
    agents, ego = state.agents, state.ego
    half_width = torch.where(agents.valid, 0.5 * agents.width, torch.full_like(agents.width, -FAR))
    xy = torch.cat((agents.xy, ego_center(ego).unsqueeze(1)), dim=1)  # (B, M, 2)
    return Obstacles(
        x=xy[..., 0].contiguous(),
        y=xy[..., 1].contiguous(),
        yaw=torch.cat((agents.yaw, ego.yaw.unsqueeze(1)), dim=1),
        speed=torch.cat((agents.speed, ego.speed.unsqueeze(1)), dim=1),
        half_length=torch.cat((0.5 * agents.length, 0.5 * ego.length.unsqueeze(1)), dim=1),
        half_width=torch.cat((half_width, 0.5 * ego.width.unsqueeze(1)), dim=1),
    )


@dataclass(frozen=True)
class Query:
    """What each follower looks for. All fields [B, N].

    Attributes:
        x, y, yaw: the follower's box centre, m, and heading, rad.
        curvature: of its path at its position, 1/m (left turn > 0).
        half_length: m.
        body_half: its share of the body corridor: an obstacle is in the
            corridor when its centre is within `body_half` + its own half width
            of the follower's arc.
        reach: m; obstacles further than this (bumper to bumper) are ignored.
        sees_ego: bool, the ego is an obstacle for this follower.
        target_shift: lateral position of the target lane's centre relative
            to the follower, m (left > 0), or None when no lane change is considered.
        target_half: its share of the target lane corridor (half the lane
            width minus the intrusion that counts as occupying it), or None.
    """

    x: Tensor
    y: Tensor
    yaw: Tensor
    curvature: Tensor
    half_length: Tensor
    body_half: Tensor
    reach: Tensor
    sees_ego: Tensor
    target_shift: Tensor | None = None
    target_half: Tensor | None = None

    def rows(self, start: int, stop: int) -> Query:
        cut = lambda t: None if t is None else t[start:stop]  # noqa: E731
        return Query(*(cut(getattr(self, name)) for name in self.__dataclass_fields__))


@dataclass(frozen=True)
class Neighbour:
    """The nearest obstacle in a corridor, per follower. All fields [B, N].

    Attributes:
        gap: bumper-to-bumper distance along the follower's heading, m (huge
            when there is none).
        index: long, obstacle slot (N = the ego).
        exists: bool, an obstacle lies within the follower's reach.
    """

    gap: Tensor
    index: Tensor
    exists: Tensor


@dataclass(frozen=True)
class Found:
    """Search results: `leader` always; the rest only when lane changes are considered."""

    leader: Neighbour
    follower: Neighbour | None = None  # behind, in the body corridor
    target_leader: Neighbour | None = None
    target_follower: Neighbour | None = None


def pick(values: Tensor, index: Tensor) -> Tensor:
    """values [B, M] at index [B, N] -> [B, N]."""
    return torch.gather(values, 1, index)


def _obstacle_rows(obstacles: Obstacles, start: int, stop: int) -> Obstacles:
    return Obstacles(*(getattr(obstacles, name)[start:stop] for name in obstacles.__dataclass_fields__))


def _frame(q: Query, obstacles: Obstacles) -> tuple[Tensor, Tensor]:
    """Obstacles seen from each follower: (dx, lateral) [B, N, M].

    dx is the centre-to-centre distance along the follower's heading. For a
    point at (dx, dy) in the follower's frame, lateral = dy - k (dx^2 + dy^2) / 2
    is zero on the circle of curvature k through the follower and equals
    e - k e^2 / 2 at radial distance e from it, so leaders on curved roads stay
    in the corridor (to 0.1 m for the next lane on a 60 m radius).
    """
    dxw = obstacles.x.unsqueeze(1) - q.x.unsqueeze(-1)  # (B, N, M)
    dyw = obstacles.y.unsqueeze(1) - q.y.unsqueeze(-1)
    c = torch.cos(q.yaw).unsqueeze(-1)  # (B, N, 1)
    s = torch.sin(q.yaw).unsqueeze(-1)
    dx = torch.addcmul(dxw * c, dyw, s)
    lateral = torch.addcmul(dyw * c, dxw, -s)  # dy, corrected below
    dist2 = dxw.mul_(dxw).addcmul_(dyw, dyw)  # in place on the temporaries
    lateral.addcmul_(dist2, -0.5 * q.curvature.unsqueeze(-1))
    return dx, lateral


def _corridor(own_half: Tensor, obstacles: Obstacles, sees_ego: Tensor) -> Tensor:
    """Corridor half width [B, N, M]: the follower's share plus the obstacle's half
    width; -FAR in the ego's column for followers that do not see the ego."""
    half = own_half.unsqueeze(-1) + obstacles.half_width.unsqueeze(1)  # (B, N, M)
    ego = half[..., obstacles.ego_slot]
    # In place on the temporary made just above; no state tensor is touched.
    half[..., obstacles.ego_slot] = torch.where(sees_ego, ego, torch.full_like(ego, -FAR))
    return half


def _nearest(dx: Tensor, excess: Tensor, obstacles: Obstacles, q: Query, *, ahead: bool) -> Neighbour:
    """Nearest obstacle (by centre distance) strictly ahead or behind whose
    `excess` (distance outside the corridor) is <= 0."""
    if ahead:
        excluded = torch.maximum(AHEAD_EPS - dx, excess).gt_(0.0)  # (B, N, M) 1.0 = not a candidate
        key = dx.add(excluded, alpha=FAR)  # candidates: dx > 0; others about FAR (positions << FAR)
    else:
        excluded = torch.maximum(dx + AHEAD_EPS, excess).gt_(0.0)
        key = torch.sub(excluded.mul_(FAR), dx)
    distance, index = key.min(dim=-1)
    gap = distance - q.half_length - pick(obstacles.half_length, index)
    return Neighbour(gap=gap, index=index, exists=gap < q.reach)


def _search_block(q: Query, obstacles: Obstacles) -> Found:
    dx, lateral = _frame(q, obstacles)
    body_excess = lateral.abs() - _corridor(q.body_half, obstacles, q.sees_ego)
    leader = _nearest(dx, body_excess, obstacles, q, ahead=True)
    if q.target_shift is None or q.target_half is None:
        return Found(leader)
    follower = _nearest(dx, body_excess, obstacles, q, ahead=False)
    target = lateral.sub_(q.target_shift.unsqueeze(-1)).abs_()  # (B, N, M) from the target lane centre
    target_excess = target.sub_(_corridor(q.target_half, obstacles, q.sees_ego))
    return Found(
        leader,
        follower,
        _nearest(dx, target_excess, obstacles, q, ahead=True),
        _nearest(dx, target_excess, obstacles, q, ahead=False),
    )


def _join(parts: list[Neighbour | None]) -> Neighbour | None:
    if parts[0] is None:
        return None
    return Neighbour(*(torch.cat([getattr(p, name) for p in parts]) for name in Neighbour.__dataclass_fields__))


def search(q: Query, obstacles: Obstacles) -> Found:
    """Neighbours of every follower; see `Query` and `Found`."""
    B, N = q.x.shape
    M = obstacles.x.shape[1]
    rows = B if q.x.is_cuda else max(1, PAIRS_PER_BLOCK // (N * M))
    if rows >= B:
        return _search_block(q, obstacles)
    blocks = [_search_block(q.rows(i, i + rows), _obstacle_rows(obstacles, i, i + rows)) for i in range(0, B, rows)]
    return Found(*(_join([getattr(b, name) for b in blocks]) for name in Found.__dataclass_fields__))
