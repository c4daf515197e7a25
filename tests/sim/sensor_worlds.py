"""Small hand-built worlds for the sensor tests.

Boxes are placed in the ego frame (origin at the ego box centre, x forward,
y left) and converted to the world frame of an ego at an arbitrary pose, so
the tests also exercise the world -> ego transform.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from sim.config import Capacity
from sim.state import AgentKind, WorldState, empty_world

CAPACITY = Capacity(agents=8, paths=2, path_points=64)


@dataclass(frozen=True)
class Box:
    """An agent box in the ego frame: centre (x, y) m, heading relative to the ego."""

    x: float
    y: float
    yaw: float = 0.0
    length: float = 4.5
    width: float = 1.9
    height: float = 1.5
    kind: AgentKind = AgentKind.VEHICLE
    speed: float = 0.0


def _ego_to_world(x: float, y: float, centre: tuple[float, float], yaw: float) -> tuple[float, float]:
    c, s = math.cos(yaw), math.sin(yaw)
    return centre[0] + c * x - s * y, centre[1] + s * x + c * y


def sensor_world(
    boxes: Sequence[Sequence[Box]],
    *,
    ego_centre: tuple[float, float] = (10.0, -5.0),
    ego_yaw: float = 0.3,
    capacity: Capacity = CAPACITY,
    seed: int = 0,
    step: int = 0,
    sensor_range: float = 50.0,
    position_jitter: float = 0.0,
    miss_prob: float = 0.0,
    ghost_rate: float = 0.0,
    raster_noise: float = 0.0,
) -> WorldState:
    """One episode per entry of `boxes`, all with the same ego pose and sensor settings.

    Episode b gets seed `seed + b`; every episode is at step `step`.
    """
    B = len(boxes)
    world = empty_world(B, capacity)
    agents = world.agents
    xy, yaw, speed = agents.xy.clone(), agents.yaw.clone(), agents.speed.clone()
    length, width, height = agents.length.clone(), agents.width.clone(), agents.height.clone()
    kind, valid = agents.kind.clone(), agents.valid.clone()
    for b, episode in enumerate(boxes):
        if len(episode) > capacity.agents:
            raise ValueError(f"episode {b}: {len(episode)} boxes exceed {capacity.agents} agent slots")
        for n, box in enumerate(episode):
            xy[b, n] = torch.tensor(_ego_to_world(box.x, box.y, ego_centre, ego_yaw))
            yaw[b, n], speed[b, n] = ego_yaw + box.yaw, box.speed
            length[b, n], width[b, n], height[b, n] = box.length, box.width, box.height
            kind[b, n], valid[b, n] = int(box.kind), True
    agents = dataclasses.replace(
        agents,
        xy=xy,
        yaw=yaw,
        speed=speed,
        length=length,
        width=width,
        height=height,
        kind=kind,
        valid=valid,
    )
    ego = world.ego
    half_wheelbase = 0.5 * ego.wheelbase[:, None] * torch.tensor([[math.cos(ego_yaw), math.sin(ego_yaw)]])
    ego = dataclasses.replace(
        ego,
        xy=torch.tensor([ego_centre]).expand(B, 2) - half_wheelbase,
        yaw=torch.full((B,), ego_yaw),
    )
    full = lambda value: torch.full((B,), float(value))  # noqa: E731
    sensor = dataclasses.replace(
        world.sensor,
        range=full(sensor_range),
        position_jitter=full(position_jitter),
        miss_prob=full(miss_prob),
        ghost_rate=full(ghost_rate),
        raster_noise=full(raster_noise),
    )
    return dataclasses.replace(
        world,
        agents=agents,
        ego=ego,
        sensor=sensor,
        seed=torch.arange(B) + seed,
        step=torch.full((B,), step, dtype=torch.long),
    )


def with_steps(world: WorldState, step: int) -> WorldState:
    return dataclasses.replace(world, step=torch.full_like(world.step, step))


def straight_road(
    world: WorldState,
    *,
    start: tuple[float, float],
    heading: float,
    length: float = 120.0,
    road_width: float = 3.5,
    speed_limit: float = 13.9,
    cells: int = 400,
    resolution: float = 0.5,
) -> WorldState:
    """Path 0: a straight lane from `start` along `heading`; the map raster draws it.

    Drivable cells lie within `road_width` / 2 of the centreline, lane cells
    within one cell of it.
    """
    B, L, P = world.map.path_xy.shape[:3]
    s = torch.linspace(0.0, length, P)  # (P,)
    direction = torch.tensor([math.cos(heading), math.sin(heading)])
    line = torch.tensor(start) + s[:, None] * direction  # (P, 2)
    roadmap = world.map
    path_xy, path_yaw, path_s = roadmap.path_xy.clone(), roadmap.path_yaw.clone(), roadmap.path_s.clone()
    path_xy[:, 0], path_yaw[:, 0], path_s[:, 0] = line, heading, s
    path_length, path_valid = roadmap.path_length.clone(), roadmap.path_valid.clone()
    path_length[:, 0], path_valid[:, 0] = length, True
    speed = roadmap.path_speed_limit.clone()
    speed[:, 0] = speed_limit
    # Map raster centred on the road's midpoint.
    origin = line[P // 2] - 0.5 * cells * resolution  # (2,)
    centres = origin + (torch.arange(cells) + 0.5)[:, None] * resolution * torch.ones(2)
    gx, gy = torch.meshgrid(centres[:, 0], centres[:, 1], indexing="xy")  # (H, W): row = y
    rel_x, rel_y = gx - start[0], gy - start[1]
    along = rel_x * direction[0] + rel_y * direction[1]
    across = -rel_x * direction[1] + rel_y * direction[0]
    on_road = (along >= 0) & (along <= length)
    drivable = on_road & (across.abs() <= 0.5 * road_width)
    lane = on_road & (across.abs() <= resolution)
    raster = torch.stack((drivable, lane, torch.zeros_like(lane))).to(torch.uint8) * 255
    roadmap = dataclasses.replace(
        roadmap,
        path_xy=path_xy,
        path_yaw=path_yaw,
        path_s=path_s,
        path_length=path_length,
        path_valid=path_valid,
        path_speed_limit=speed,
        raster=raster.unsqueeze(0),
        raster_origin=origin.expand(B, 2).clone(),
        raster_resolution=torch.full((B,), resolution),
    )
    return dataclasses.replace(world, map=roadmap)


def concat_worlds(worlds: Sequence[WorldState]) -> WorldState:
    """The episodes of `worlds` in one batch (map rasters expanded per episode)."""

    def cat_contract(parts: list) -> object:
        fields = {}
        for name in parts[0].field_names():
            tensors = [getattr(p, name) for p in parts]
            if name == "raster":
                tensors = [t.expand(p.batch_size, *t.shape[1:]) for t, p in zip(tensors, parts, strict=True)]
            fields[name] = torch.cat(tensors, dim=0)
        return dataclasses.replace(parts[0], **fields)

    first = worlds[0]
    return dataclasses.replace(
        first,
        step=torch.cat([w.step for w in worlds]),
        seed=torch.cat([w.seed for w in worlds]),
        **{
            name: cat_contract([getattr(w, name) for w in worlds])
            for name in ("ego", "agents", "params", "log", "map", "sensor")
        },
    )
