"""Placing vehicles in queues along lanes without overlaps (batched over episodes and slots)."""

from __future__ import annotations

import torch
from torch import Tensor

from sim.scenarios.agents import EGO_CLEARANCE, EGO_HEADWAY
from sim.scenarios.context import BuildContext

_SLACK = 0.1  # m


def queue_offsets(ctx: BuildContext, name: str, lane: Tensor, valid: Tensor, length: Tensor, gap: Tensor) -> Tensor:
    """Distance `[B, K]` from the start of each slot's lane queue to its rear bumper.

    Slots sharing a lane line up in a random order (keyed by `name`), each
    `length + gap` behind the next, so no two boxes of a lane overlap.
    """
    K = lane.shape[1]
    key = ctx.draws.uniform(name, (K,))  # (B, K)
    before = (lane[:, None, :] == lane[:, :, None]) & (key[:, None, :] < key[:, :, None])  # (B, i, j)
    before = before & valid[:, None, :]
    return (before * (length + gap)[:, None, :]).sum(-1)


def skip_ego(ctx: BuildContext, lane: Tensor, valid: Tensor, rear: Tensor, length: Tensor) -> Tensor:
    """Shift the queue on the ego's route forward past the ego (plus `EGO_CLEARANCE` behind and
    the larger of it and `EGO_HEADWAY` at the ego's speed ahead).

    `rear [B, K]` is each slot's rear-bumper arc length; the first slot whose box
    would meet the ego's zone and every slot after it on that lane move by the
    same amount, so spacing is kept and the ego sits in a gap of the queue.
    """
    if rear.shape[-1] == 0:  # no traffic at all (vehicles: 0, cyclists: 0)
        return rear
    ego = ctx.ego
    centre = ctx.ego_s + ego.wheelbase / 2  # (B,) box centre on the route (equal overhangs)
    reach = ego.length / 2 + EGO_CLEARANCE + _SLACK  # slack: boxes that merely touch count as overlapping
    reach_ahead = torch.maximum(reach, ego.length / 2 + EGO_HEADWAY * ego.speed + _SLACK)
    z0, z1 = (centre - reach)[:, None], (centre + reach_ahead)[:, None]
    mine = valid & (lane == ego.route[:, None])
    meets = mine & (rear < z1) & (rear + length > z0)
    first = torch.where(meets, rear, torch.full_like(rear, float("inf"))).amin(-1, keepdim=True)  # (B, 1)
    shift = torch.where(torch.isfinite(first), z1 - first, torch.zeros_like(first))
    return torch.where(mine & (rear >= first), rear + shift, rear)


def fits_on_path(ctx: BuildContext, path: Tensor, s: Tensor, length: Tensor) -> Tensor:
    """`[B, K]` boxes centred at arc length `s` that lie within their path's ends."""
    total = torch.gather(ctx.roadmap.path_length, 1, path.clamp_min(0))
    return (path >= 0) & (s - length / 2 >= 0) & (s + length / 2 <= total)
