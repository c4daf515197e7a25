"""Small hand-built worlds for the dynamics tests: straight and circular lanes,
IDM cars, walkers, replayed agents, all filled into `sim.state.empty_world`.

Test code only; the real road builders live in `sim.roads`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import Tensor

from sim.config import Capacity
from sim.dynamics import lanes
from sim.state import AgentKind, Behaviour, WorldState, empty_world


@dataclasses.dataclass(frozen=True)
class Lane:
    """One polyline with everything `RoadMap` stores per path: xy [P, 2], yaw,
    s, curvature [P], and the scalars length, width, speed limit."""

    xy: Tensor
    yaw: Tensor
    s: Tensor
    curvature: Tensor
    width: float = 3.5
    speed_limit: float = 13.9

    @property
    def length(self) -> float:
        return float(self.s[-1])


def resample(points: Tensor, count: int, width: float = 3.5, speed_limit: float = 13.9) -> Lane:
    """A polyline `points [K, 2]` resampled to `count` points at equal arc length,
    with tangent headings and signed curvature (d yaw / d s) from finite differences."""
    points = points.double()
    seg = points[1:] - points[:-1]
    cum = torch.cat((torch.zeros(1, dtype=points.dtype), torch.cumsum(seg.norm(dim=-1), 0)))
    s = torch.linspace(0.0, float(cum[-1]), count, dtype=points.dtype)
    i = (torch.searchsorted(cum, s, right=True) - 1).clamp(0, len(cum) - 2)
    frac = ((s - cum[i]) / (cum[i + 1] - cum[i]).clamp_min(1e-12)).unsqueeze(-1)
    xy = points[i] + frac * seg[i]
    # Tangents and curvature from the resampled segments: yaw at a point is the
    # mean of its two segments' directions, curvature the turn between them per metre.
    d = xy[1:] - xy[:-1]
    seg_yaw = torch.from_numpy(np.unwrap(torch.atan2(d[:, 1], d[:, 0]).numpy()))
    yaw = torch.cat((seg_yaw[:1], 0.5 * (seg_yaw[1:] + seg_yaw[:-1]), seg_yaw[-1:]))
    step = s[1] - s[0]
    bend = (seg_yaw[1:] - seg_yaw[:-1]) / step
    curvature = torch.cat((bend[:1], bend, bend[-1:]))
    yaw = torch.atan2(torch.sin(yaw), torch.cos(yaw))
    return Lane(xy.float(), yaw.float(), s.float(), curvature.float(), width, speed_limit)


def straight(count: int, length: float, *, start=(0.0, 0.0), heading=0.0, offset=0.0, **kw) -> Lane:
    """A straight lane `offset` m to the left of the line from `start` along `heading`."""
    c, s = math.cos(heading), math.sin(heading)
    x0, y0 = start[0] - s * offset, start[1] + c * offset
    pts = torch.tensor([[x0, y0], [x0 + c * length, y0 + s * length]], dtype=torch.float64)
    return resample(pts, count, **kw)


def arc(count: int, radius: float, sweep: float, *, offset=0.0, lead_in=0.0, **kw) -> Lane:
    """A left-turning lane of radius `radius - offset` (centre at (0, radius)), starting
    at the origin heading +x after an optional straight `lead_in` from (-lead_in, 0)."""
    r = radius - offset
    angles = torch.linspace(0.0, sweep, 400, dtype=torch.float64)
    pts = torch.stack((r * torch.sin(angles), radius - r * torch.cos(angles)), dim=-1)
    if lead_in > 0:
        pts = torch.cat((torch.tensor([[-lead_in, offset]], dtype=torch.float64), pts))
    return resample(pts, count, **kw)


def road_world(lanes: list[Lane], *, batch: int = 1, agents: int = 8, log_steps: int = 1) -> WorldState:
    """A world whose paths are `lanes` (path i = lanes[i]), neighbours left to right:
    lane i + 1 is the left neighbour of lane i. Same map in every episode."""
    P = lanes[0].xy.shape[0]
    cap = Capacity(agents=agents, paths=max(len(lanes), 1), path_points=P, log_steps=log_steps)
    w = empty_world(batch, cap)
    m = w.map
    fields = {
        n: getattr(m, n).clone()
        for n in (
            "path_xy",
            "path_yaw",
            "path_s",
            "path_curvature",
            "path_length",
            "path_width",
            "path_speed_limit",
            "path_left",
            "path_right",
            "path_valid",
        )
    }
    for i, lane in enumerate(lanes):
        fields["path_xy"][:, i] = lane.xy
        fields["path_yaw"][:, i] = lane.yaw
        fields["path_s"][:, i] = lane.s
        fields["path_curvature"][:, i] = lane.curvature
        fields["path_length"][:, i] = lane.length
        fields["path_width"][:, i] = lane.width
        fields["path_speed_limit"][:, i] = lane.speed_limit
        fields["path_valid"][:, i] = True
        if i + 1 < len(lanes):
            fields["path_left"][:, i] = i + 1
            fields["path_right"][:, i + 1] = i
    return dataclasses.replace(w, map=dataclasses.replace(m, **fields))


def set_slot(world: WorldState, b: int, n: int, *, agent: dict | None = None, params: dict | None = None) -> WorldState:
    """A copy of `world` with agent slot (b, n)'s AgentState / AgentParams fields set."""

    def fill(record, values):
        changes = {}
        for name, value in (values or {}).items():
            t = getattr(record, name).clone()
            t[b, n] = torch.as_tensor(value, dtype=t.dtype)
            changes[name] = t
        return dataclasses.replace(record, **changes)

    return dataclasses.replace(world, agents=fill(world.agents, agent), params=fill(world.params, params))


def place_on_path(world: WorldState) -> WorldState:
    """Recompute xy and yaw of every IDM slot from its (path, s, d)."""
    a = world.agents
    pose = lanes.pose_at(world.map, lanes.locate(world.map, a.path, a.s), a.d)
    xy, yaw = pose.xy, pose.yaw
    idm = (a.behaviour == int(Behaviour.IDM)).unsqueeze(-1)
    return dataclasses.replace(
        world, agents=dataclasses.replace(a, xy=torch.where(idm, xy, a.xy), yaw=torch.where(idm[..., 0], yaw, a.yaw))
    )


def idm_car(
    world: WorldState,
    b: int,
    n: int,
    *,
    path: int,
    s: float,
    speed: float,
    desired_speed: float,
    d: float = 0.0,
    politeness: float = -1.0,
    yields_to_ego: bool = True,
    length: float = 4.5,
    width: float = 1.9,
    kind: AgentKind = AgentKind.VEHICLE,
    **params,
) -> WorldState:
    world = set_slot(
        world,
        b,
        n,
        agent=dict(
            path=path,
            s=s,
            d=d,
            speed=speed,
            length=length,
            width=width,
            kind=int(kind),
            behaviour=int(Behaviour.IDM),
            valid=True,
        ),
        params=dict(desired_speed=desired_speed, politeness=politeness, yields_to_ego=yields_to_ego, **params),
    )
    return place_on_path(world)


def static_car(
    world: WorldState, b: int, n: int, *, path: int, s: float, d: float = 0.0, length: float = 4.5, width: float = 1.9
) -> WorldState:
    m = world.map
    pose = lanes.pose_at(m, lanes.locate(m, torch.tensor([[path]]), torch.tensor([[s]])), torch.tensor([[d]]))
    xy, yaw = pose.xy, pose.yaw
    return set_slot(
        world,
        b,
        n,
        agent=dict(
            xy=xy[0, 0],
            yaw=float(yaw[0, 0]),
            path=path,
            s=s,
            d=d,
            length=length,
            width=width,
            behaviour=int(Behaviour.STATIC),
            valid=True,
        ),
    )


def set_ego(
    world: WorldState, *, xy=(0.0, 0.0), yaw: float = 0.0, speed: float = 0.0, route: int = 0, progress: float = 0.0
) -> WorldState:
    """Every episode's ego at the same pose (rear axle `xy`)."""
    e = world.ego
    B = world.batch_size
    return dataclasses.replace(
        world,
        ego=dataclasses.replace(
            e,
            xy=torch.tensor(xy, dtype=torch.float32).expand(B, 2).clone(),
            yaw=torch.full((B,), yaw),
            speed=torch.full((B,), speed),
            route=torch.full((B,), route, dtype=torch.long),
            progress=torch.full((B,), progress),
        ),
    )


def park_ego(world: WorldState, far: float = 1.0e4) -> WorldState:
    """Put the ego far away, stopped, so it never interacts."""
    return set_ego(world, xy=(far, far))


def random_highway(
    batch: int, agents: int, *, lanes: int = 4, length: float = 600.0, points: int = 96, seed: int = 0
) -> WorldState:
    """`agents` random IDM cars per episode on `lanes` straight parallel lanes (for timing)."""
    g = torch.Generator().manual_seed(seed)
    world = road_world([straight(points, length, offset=3.5 * i) for i in range(lanes)], batch=batch, agents=agents)
    B, N = batch, agents
    path = torch.randint(0, lanes, (B, N), generator=g)
    # Spread cars along each lane without overlap: slot order along s, random jitter.
    s = (torch.arange(N).float() * (length * 0.8 / N)).expand(B, N) + torch.rand(B, N, generator=g) * 5.0
    speed = 8.0 + 10.0 * torch.rand(B, N, generator=g)
    a = dataclasses.replace(
        world.agents,
        path=path,
        s=s,
        speed=speed,
        d=torch.zeros(B, N),
        behaviour=torch.full((B, N), int(Behaviour.IDM)),
        valid=torch.ones(B, N, dtype=torch.bool),
        length=torch.full((B, N), 4.5),
        width=torch.full((B, N), 1.9),
    )
    p = dataclasses.replace(
        world.params,
        desired_speed=speed + 5.0 * torch.rand(B, N, generator=g),
        politeness=torch.full((B, N), 0.2),
    )
    world = dataclasses.replace(world, agents=a, params=p)
    return park_ego(place_on_path(world))


def _rows(record, index: list[int]):
    changes = {}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        # A raster shared by the whole batch (leading size 1) stays shared.
        changes[f.name] = value if value.shape[0] == 1 and f.name == "raster" else value[index]
    return dataclasses.replace(record, **changes)


def episodes(world: WorldState, index: list[int]) -> WorldState:
    """The episodes `index` of `world`, in that order, as a new batch."""
    return dataclasses.replace(
        world,
        step=world.step[index],
        seed=world.seed[index],
        **{name: _rows(getattr(world, name), index) for name in ("ego", "agents", "params", "log", "map", "sensor")},
    )


def walker(
    world: WorldState,
    b: int,
    n: int,
    *,
    start,
    end,
    speed: float,
    start_time: float = 0.0,
    pause_at: float = 2.0,
    pause_duration: float = 0.0,
) -> WorldState:
    return set_slot(
        world,
        b,
        n,
        agent=dict(
            xy=start,
            kind=int(AgentKind.PEDESTRIAN),
            behaviour=int(Behaviour.WALK),
            valid=True,
            length=0.6,
            width=0.6,
            height=1.7,
        ),
        params=dict(
            walk_from=start,
            walk_to=end,
            desired_speed=speed,
            start_time=start_time,
            pause_at=pause_at,
            pause_duration=pause_duration,
        ),
    )


def with_log(world: WorldState, xy: Tensor, yaw: Tensor, valid: Tensor) -> WorldState:
    """Replace the replay log (shapes [B, N, TL, 2], [B, N, TL], [B, N, TL])."""
    return dataclasses.replace(world, log=dataclasses.replace(world.log, xy=xy, yaw=yaw, valid=valid))


def mixed_world(batch: int, log_steps: int = 60) -> WorldState:
    """Episodes with every behaviour: IDM cars that change lanes and react to the
    ego, a car that appears late, a walker crossing, a replayed car, a parked car.
    Episode b differs from the others through its speeds and positions."""
    world = road_world(
        [straight(96, 500.0), straight(96, 500.0, offset=3.5)], batch=batch, agents=8, log_steps=log_steps
    )
    for b in range(batch):
        u = 1.0 + 0.1 * b
        world = idm_car(world, b, 0, path=0, s=30.0 * u, speed=18.0, desired_speed=22.0 * u, politeness=0.2)
        world = idm_car(world, b, 1, path=0, s=70.0 * u, speed=9.0 * u, desired_speed=10.0)
        world = idm_car(
            world, b, 2, path=1, s=120.0 * u, speed=20.0, desired_speed=24.0, politeness=0.1, yields_to_ego=False
        )
        world = idm_car(world, b, 3, path=1, s=200.0 * u, speed=12.0, desired_speed=14.0, appear_time=1.0)
        world = set_slot(world, b, 3, agent=dict(valid=False))
        world = walker(
            world,
            b,
            4,
            start=(90.0 * u, -6.0),
            end=(90.0 * u, 10.0),
            speed=1.4,
            start_time=0.5 * b,
            pause_at=0.4,
            pause_duration=1.0,
        )
        world = static_car(world, b, 5, path=1, s=300.0)
        world = set_slot(world, b, 6, agent=dict(behaviour=int(Behaviour.REPLAY), length=4.5, width=1.9))
    t = torch.arange(log_steps, dtype=torch.float32) * world.dt
    speed = 8.0 + torch.arange(batch, dtype=torch.float32).unsqueeze(-1)  # (B, 1)
    log_xy = world.log.xy.clone()
    log_xy[:, 6, :, 0] = 20.0 + speed * t + 0.3 * t * t
    log_xy[:, 6, :, 1] = -3.5
    log_valid = world.log.valid.clone()
    log_valid[:, 6, : log_steps - 5] = True
    world = with_log(world, log_xy, world.log.yaw.clone(), log_valid)
    world = set_slot(world, 0, 6, agent=dict(xy=log_xy[0, 6, 0], valid=True))
    for b in range(1, batch):
        world = set_slot(world, b, 6, agent=dict(xy=log_xy[b, 6, 0], valid=True))
    return set_ego(world, xy=(0.0, 0.0), speed=10.0, route=0)
