"""Synthetic worlds for the metrics: what `bench/metrics_update.py` times and the metric tests build on.

The world: a straight 300 m route with a drivable strip, the ego on it at
speed, and N agents of every class scattered within 40 m of the ego, all valid.
Randomness comes from `sim.rng`, so the world is the same on every device.
"""

from __future__ import annotations

import dataclasses

import torch

from sim import rng
from sim.config import Capacity
from sim.state import WorldState, empty_world

_STREAM = 0xBE7C


def straight_route_world(
    batch: int,
    agents: int,
    *,
    route_length: float = 300.0,
    road_half_width: float = 5.0,
    path_points: int = 96,
    dt: float = 0.1,
    device: torch.device | str = "cpu",
) -> WorldState:
    """An empty world whose path 0 runs straight along +x from (0, 0), drivable within
    `road_half_width` of it (raster at 1 m cells, 20 m margin around the road)."""
    world = empty_world(batch, Capacity(agents=agents, path_points=path_points), dt=dt, device=device)
    m = world.map
    P = path_points
    s = torch.linspace(0.0, route_length, P, device=device)
    path_xy = m.path_xy.clone()
    path_xy[:, 0, :, 0] = s
    path_s = m.path_s.clone()
    path_s[:, 0] = s
    length = m.path_length.clone()
    length[:, 0] = route_length
    valid = m.path_valid.clone()
    valid[:, 0] = True
    margin = 20
    H, W = 2 * margin, int(route_length) + 2 * margin
    raster = torch.zeros(1, 3, H, W, dtype=torch.uint8, device=device)
    row_y = torch.arange(H, device=device) + 0.5 - margin  # cell centre y
    raster[0, 0, row_y.abs() <= road_half_width] = 255
    origin = torch.tensor([-float(margin), -float(margin)], device=device).expand(batch, 2).contiguous()
    roadmap = dataclasses.replace(
        m,
        path_xy=path_xy,
        path_s=path_s,
        path_length=length,
        path_valid=valid,
        raster=raster,
        raster_origin=origin,
        raster_resolution=torch.ones(batch, device=device),
    )
    return dataclasses.replace(world, map=roadmap)


def random_world(batch: int, agents: int, seed: int = 0, device: torch.device | str = "cpu") -> WorldState:
    """`straight_route_world` with the ego at 10 m/s and `agents` random valid agents around it."""
    world = straight_route_world(batch, agents, device=device)
    b = torch.arange(batch, device=device)[:, None]
    n = torch.arange(agents, device=device)[None, :]

    def u(slot: int) -> torch.Tensor:  # (B, N) uniforms in [0, 1)
        return rng.uniform(seed, b, _STREAM, n * 16 + slot).to(device)

    ego = dataclasses.replace(
        world.ego,
        xy=torch.tensor([50.0, 0.0], device=device).expand(batch, 2).contiguous(),
        speed=torch.full((batch,), 10.0, device=device),
        accel=torch.full((batch,), 0.5, device=device),
        progress=torch.full((batch,), 50.0, device=device),
    )
    kind = (u(0) * 3).long()
    agent_state = dataclasses.replace(
        world.agents,
        xy=torch.stack((50.0 + (u(1) - 0.5) * 80.0, (u(2) - 0.5) * 20.0), dim=-1),
        yaw=(u(3) - 0.5) * 6.283,
        speed=u(4) * 12.0,
        length=torch.where(kind == 0, 4.5, 1.0) + u(5),
        width=torch.where(kind == 0, 1.9, 0.6) + 0.2 * u(6),
        kind=kind,
        behaviour=(u(7) * 3).long(),
        valid=torch.ones(batch, agents, dtype=torch.bool, device=device),
    )
    return dataclasses.replace(world, ego=ego, agents=agent_state)


def advance(world: WorldState) -> WorldState:
    """Move everything forward one step at constant velocity (a stand-in for `sim.step`)."""
    ego, a, dt = world.ego, world.agents, world.dt
    ego_dir = torch.stack((torch.cos(ego.yaw), torch.sin(ego.yaw)), -1)
    a_dir = torch.stack((torch.cos(a.yaw), torch.sin(a.yaw)), -1)
    return dataclasses.replace(
        world,
        step=world.step + 1,
        ego=dataclasses.replace(
            ego, xy=ego.xy + ego_dir * (ego.speed * dt)[:, None], progress=ego.progress + ego.speed * dt
        ),
        agents=dataclasses.replace(a, xy=a.xy + a_dir * (a.speed * dt)[..., None]),
    )
