"""Blocks of agent slots that family builders place, and their assembly into the world.

A `Block` holds K slots `[B, K, ...]` of `AgentState`, `AgentParams` and
`AgentLog`. Builders return a list of blocks; `assemble` concatenates them into
N slots and removes droppable traffic that would overlap the ego or an earlier
agent at t = 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from sim.config import Capacity
from sim.geometry import box_corners, boxes_overlap, ego_center, path_pose, wrap_angle
from sim.scenarios.context import BuildContext
from sim.scenarios.params import Param
from sim.state import AgentKind, AgentLog, AgentParams, AgentState, Behaviour, EgoState, empty_world

# (length, width, height) in m of each kind's box.
SIZES = {
    AgentKind.VEHICLE: (4.6, 1.9, 1.6),
    AgentKind.CYCLIST: (1.8, 0.7, 1.7),
    AgentKind.PEDESTRIAN: (0.5, 0.6, 1.75),
}
EGO_CLEARANCE = 6.0  # m kept free ahead of and behind the ego when placing droppable traffic
# Random traffic ahead of the ego also keeps this time gap at the ego's start speed,
# so no episode opens with an emergency stop that no policy could avoid.
EGO_HEADWAY = 2.0  # s
_OVERLAP_CHUNK = 128  # episodes per pairwise-overlap chunk (bounds memory at large B)


@dataclass(frozen=True)
class Block:
    """K agent slots for B episodes. `droppable` slots are random traffic that
    `assemble` may remove where it overlaps; scripted agents are never dropped."""

    agents: AgentState
    params: AgentParams
    log: AgentLog
    droppable: bool = False

    @property
    def size(self) -> int:
        return int(self.agents.valid.shape[1])


def blank(B: int, K: int, TL: int) -> Block:
    """K unused slots with `empty_world`'s harmless defaults."""
    w = empty_world(B, Capacity(agents=K, paths=1, path_points=2, crosswalks=1, log_steps=TL), raster_cells=1)
    return Block(w.agents, w.params, w.log)


def make_block(
    ctx: BuildContext,
    *,
    kind: AgentKind | Tensor,
    behaviour: Behaviour,
    xy: Tensor,
    yaw: Tensor,
    valid: Tensor,
    speed: Tensor | None = None,
    path: Tensor | None = None,
    s: Tensor | None = None,
    d: Tensor | None = None,
    size: tuple[Tensor, Tensor, Tensor] | None = None,
    params: dict[str, Tensor] | None = None,
    log: AgentLog | None = None,
    droppable: bool = False,
) -> Block:
    """A block of one behaviour from its t = 0 poses `xy [B, K, 2]`, `yaw [B, K]`; `kind` is one
    `AgentKind` or `[B, K]` kinds; box sizes default to the kind's `SIZES`."""
    B, K = valid.shape
    base = blank(B, K, ctx.log_steps)
    kinds = kind if isinstance(kind, Tensor) else torch.full((B, K), int(kind), dtype=torch.long)
    length, width, height = size or kind_sizes(kinds)
    zeros = torch.zeros(B, K)
    agents = dataclasses.replace(
        base.agents,
        xy=xy.float(),
        yaw=yaw.float(),
        valid=valid.bool(),
        speed=(zeros if speed is None else speed).float(),
        length=length.float(),
        width=width.float(),
        height=height.float(),
        kind=kinds.long(),
        behaviour=torch.full((B, K), int(behaviour), dtype=torch.long),
        path=base.agents.path if path is None else path.long(),
        s=zeros if s is None else s.float(),
        d=zeros if d is None else d.float(),
    )
    agent_params = dataclasses.replace(base.params, **{k: v for k, v in (params or {}).items()})
    return Block(agents, agent_params, log if log is not None else base.log, droppable)


def kind_sizes(kind: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Default (length, width, height) `[B, K]` each for kinds `[B, K]`."""
    table = torch.tensor([SIZES[k] for k in AgentKind])  # (kinds, 3)
    sizes = table[kind]  # (B, K, 3)
    return sizes[..., 0], sizes[..., 1], sizes[..., 2]


def on_path(
    ctx: BuildContext,
    *,
    kind: AgentKind | Tensor,
    behaviour: Behaviour,
    path: Tensor,
    s: Tensor,
    valid: Tensor,
    d: Tensor | None = None,
    **kwargs,
) -> Block:
    """Agents at arc length `s [B, K]` and offset `d` on `path [B, K]`; poses from `path_pose`."""
    xy, yaw, _ = path_pose(ctx.roadmap, path, s, d)
    return make_block(ctx, kind=kind, behaviour=behaviour, xy=xy, yaw=yaw, valid=valid, path=path, s=s, d=d, **kwargs)


def idm_params(
    ctx: BuildContext, idm: Mapping[str, Param], name: str, K: int, desired_speed: Tensor
) -> dict[str, Tensor]:
    """AgentParams fields of K IDM agents; `idm` holds the parsed keys of `IDM_FIELDS`,
    `name` prefixes their draw names."""
    draw = lambda key: ctx.draws.sample(idm[key], f"{name}.{key}", (K,)).float()  # noqa: E731
    return {
        "desired_speed": desired_speed.float(),
        "time_headway": draw("time_headway"),
        "min_gap": draw("min_gap"),
        "max_accel": draw("max_accel"),
        "comfort_decel": draw("comfort_decel"),
        "politeness": draw("politeness"),
    }


def route_points(ctx: BuildContext, s: Tensor, d: Tensor) -> Tensor:
    """World points `[B, K, 2]` at (arc length s, offset d) along the ego's route."""
    route = ctx.ego.route[:, None].expand_as(s)
    return path_pose(ctx.roadmap, route, s, d)[0]


def walkers(
    ctx: BuildContext,
    *,
    start: tuple[Tensor, Tensor],
    end: tuple[Tensor, Tensor],
    valid: Tensor,
    speed: Tensor,
    start_time: Tensor,
    pause_at: Tensor | None = None,
    pause_duration: Tensor | None = None,
    droppable: bool = False,
) -> Block:
    """WALK pedestrians from (s, d) `start` to `end`, both relative to the ego's route, `[B, K]` each."""
    walk_from = route_points(ctx, *start)
    walk_to = route_points(ctx, *end)
    heading = walk_to - walk_from
    yaw = torch.atan2(heading[..., 1], heading[..., 0])
    params = {
        "desired_speed": speed,
        "walk_from": walk_from,
        "walk_to": walk_to,
        "start_time": start_time,
        "pause_at": pause_at if pause_at is not None else torch.full_like(speed, 2.0),
        "pause_duration": pause_duration if pause_duration is not None else torch.zeros_like(speed),
    }
    route = ctx.ego.route[:, None].expand_as(speed)
    return make_block(
        ctx,
        kind=AgentKind.PEDESTRIAN,
        behaviour=Behaviour.WALK,
        xy=walk_from,
        yaw=yaw,
        valid=valid,
        path=route,
        s=start[0],
        d=start[1],
        params={k: v.float() for k, v in params.items()},
        droppable=droppable,
    )


def replay(
    ctx: BuildContext,
    *,
    kind: AgentKind,
    xy: Tensor,
    yaw: Tensor,
    valid: Tensor,
    speed: Tensor,
    path: Tensor | None = None,
    s: Tensor | None = None,
    droppable: bool = False,
) -> Block:
    """REPLAY agents from logs `xy [B, K, TL, 2]`, `yaw [B, K, TL]`, `valid [B, K, TL]`.

    The t = 0 state is the log's first entry; a slot absent at t = 0 starts
    invalid and `appear_time` records when its log begins.
    """
    TL = xy.shape[2]
    present = valid.any(-1)
    first = torch.where(valid, torch.arange(TL), TL).amin(-1).clamp_max(TL - 1)
    params = {"desired_speed": speed.float(), "appear_time": (first.float() * ctx.dt) * present}
    log = AgentLog(xy=xy.float(), yaw=yaw.float(), valid=valid.bool())
    return make_block(
        ctx,
        kind=kind,
        behaviour=Behaviour.REPLAY,
        xy=xy[:, :, 0],
        yaw=yaw[:, :, 0],
        valid=valid[:, :, 0],
        speed=speed,
        path=path,
        s=s,
        params=params,
        log=log,
        droppable=droppable,
    )


def path_log(
    ctx: BuildContext, path: Tensor, s_t: Tensor, d_t: Tensor, ds_dt: Tensor, dd_dt: Tensor
) -> tuple[Tensor, Tensor]:
    """Log poses along `path [B, K]` at `s_t, d_t [B, K, T]`; heading = path heading plus the
    drift angle of the lateral motion, atan2(dd/dt, ds/dt)."""
    B, K, T = s_t.shape
    flat_path = path[:, :, None].expand(B, K, T).reshape(B, K * T)
    xy, yaw, _ = path_pose(ctx.roadmap, flat_path, s_t.reshape(B, K * T), d_t.reshape(B, K * T))
    drift = torch.atan2(dd_dt, ds_dt.clamp_min(1e-3))
    return xy.reshape(B, K, T, 2), wrap_angle(yaw.reshape(B, K, T) + drift)


def ego_box(ego: EgoState, clearance: float, headway: float = 0.0) -> Tensor:
    """Ego box corners `[B, 4, 2]` grown by `clearance` behind, by the larger of
    `clearance` and `headway * speed` ahead, and by 0.3 m each side."""
    ahead = torch.maximum(torch.full_like(ego.speed, clearance), headway * ego.speed)  # (B,)
    heading = torch.stack((torch.cos(ego.yaw), torch.sin(ego.yaw)), dim=-1)
    centre = ego_center(ego) + heading * (0.5 * (ahead - clearance)).unsqueeze(-1)
    return box_corners(centre, ego.yaw, ego.length + clearance + ahead, ego.width + 0.6)


def assemble(blocks: list[Block], ctx: BuildContext) -> tuple[AgentState, AgentParams, AgentLog]:
    """Concatenate blocks into N = max(1, total K) slots; drop overlapping droppable slots;
    make every agent ignore the ego when the scenario is not reactive."""
    if not blocks or sum(b.size for b in blocks) == 0:
        blocks = [blank(ctx.batch, 1, ctx.log_steps)]

    def cat(parts):
        return type(parts[0])(
            **{f.name: torch.cat([getattr(p, f.name) for p in parts], dim=1) for f in dataclasses.fields(parts[0])}
        )

    agents = cat([b.agents for b in blocks])
    params = cat([b.params for b in blocks])
    log = cat([b.log for b in blocks])
    droppable = torch.cat([torch.full((b.size,), b.droppable) for b in blocks])  # (N,)
    keep = ~(droppable & _overlapping(agents, ctx.ego))
    agents = dataclasses.replace(agents, valid=agents.valid & keep)
    log = dataclasses.replace(log, valid=log.valid & keep[..., None])
    if not ctx.scenario.reactive:
        params = dataclasses.replace(params, yields_to_ego=torch.zeros_like(params.yields_to_ego))
    return agents, params, log


def _overlapping(agents: AgentState, ego: EgoState) -> Tensor:
    """`[B, N]` slots valid at t = 0 whose box meets the ego's cleared box or any earlier
    valid slot's box (earlier = lower index, so scripted blocks listed first win)."""
    corners = box_corners(agents.xy, agents.yaw, agents.length, agents.width)  # (B, N, 4, 2)
    cleared = ego_box(ego, EGO_CLEARANCE, EGO_HEADWAY)[:, None].expand_as(corners)
    hits_ego = boxes_overlap(corners, cleared) & agents.valid
    N = corners.shape[1]
    earlier = torch.ones(N, N, dtype=torch.bool).tril(-1)  # (i, j): j < i
    hits_other = []
    for start in range(0, corners.shape[0], _OVERLAP_CHUNK):
        c = corners[start : start + _OVERLAP_CHUNK]
        v = agents.valid[start : start + _OVERLAP_CHUNK]
        pairs = (c.shape[0], N, N, 4, 2)
        pair = boxes_overlap(c[:, :, None].expand(pairs), c[:, None, :].expand(pairs))  # (b, N, N)
        pair = pair & v[:, :, None] & v[:, None, :] & earlier
        hits_other.append(pair.any(-1))
    return hits_ego | torch.cat(hits_other)
