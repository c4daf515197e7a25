"""Small hand-built worlds for the metric tests: a straight route along +x with a
drivable strip |y| <= 5 m, the ego and agents placed where a test needs them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from sim.ego import DEFAULT_EGO
from sim.metrics import EpisodeAccumulator, MetricsConfig
from sim.metrics.worlds import straight_route_world
from sim.state import AgentKind, Behaviour, WorldState

# The ego `empty_world` builds: the default one (sim.ego).
EGO_LENGTH, EGO_WIDTH, EGO_WHEELBASE = DEFAULT_EGO.length, DEFAULT_EGO.width, DEFAULT_EGO.wheelbase
REAR_OVERHANG = (EGO_LENGTH - EGO_WHEELBASE) / 2  # rear bumper is this far behind the rear axle


def world(batch: int = 1, agents: int = 4, *, route_length: float = 200.0, speed_limit: float = 13.9) -> WorldState:
    w = straight_route_world(batch, agents, route_length=route_length, path_points=41)
    limit = w.map.path_speed_limit.clone()
    limit[:, 0] = speed_limit
    w = dataclasses.replace(w, map=dataclasses.replace(w.map, path_speed_limit=limit))
    return set_ego(w, x=10.0, y=0.0)


def _filled(current: torch.Tensor, value: float | Sequence[float] | torch.Tensor) -> torch.Tensor:
    v = torch.as_tensor(value, dtype=current.dtype)
    return v.expand_as(current).clone() if v.dim() <= current.dim() else v


def set_ego(w: WorldState, x: float | None = None, y: float | None = None, **fields: object) -> WorldState:
    """Set ego fields (floats broadcast over the batch); `x`, `y` place the rear axle."""
    ego = w.ego
    changes = {name: _filled(getattr(ego, name), value) for name, value in fields.items()}
    if x is not None or y is not None:
        xy = ego.xy.clone()
        if x is not None:
            xy[:, 0] = x
        if y is not None:
            xy[:, 1] = y
        changes["xy"] = xy
    return dataclasses.replace(w, ego=dataclasses.replace(ego, **changes))


def set_agent(
    w: WorldState,
    slot: int,
    x: float,
    y: float,
    *,
    yaw: float = 0.0,
    speed: float = 0.0,
    length: float = 4.5,
    width: float = 1.9,
    kind: AgentKind = AgentKind.VEHICLE,
    behaviour: Behaviour = Behaviour.IDM,
    valid: bool = True,
    episode: int | None = None,
) -> WorldState:
    """Put an agent (box centre `x, y`) in `slot` of every episode, or of `episode` only."""
    a = w.agents
    rows = slice(None) if episode is None else slice(episode, episode + 1)
    values = {
        "yaw": yaw,
        "speed": speed,
        "length": length,
        "width": width,
        "kind": int(kind),
        "behaviour": int(behaviour),
        "valid": valid,
    }
    changes = {}
    for name, value in values.items():
        t = getattr(a, name).clone()
        t[rows, slot] = value
        changes[name] = t
    xy = a.xy.clone()
    xy[rows, slot] = torch.tensor([x, y])
    changes["xy"] = xy
    return dataclasses.replace(w, agents=dataclasses.replace(a, **changes))


def drive(
    w: WorldState, accels: Sequence[float], *, speed: float, yaw_rates: Sequence[float] | None = None
) -> list[WorldState]:
    """States of the ego driving along +x from `w` with the given acceleration (and yaw
    rate, which only feeds the comfort signals) per step; agents stay where they are."""
    yaw_rates = yaw_rates if yaw_rates is not None else [0.0] * len(accels)
    states = [set_ego(w, speed=speed)]
    for accel, yaw_rate in zip(accels, yaw_rates, strict=True):
        prev = states[-1]
        v = (prev.ego.speed + accel * w.dt).clamp_min(0.0)
        moved = 0.5 * (prev.ego.speed + v) * w.dt
        xy = prev.ego.xy + torch.stack((moved, torch.zeros_like(moved)), dim=-1)
        nxt = set_ego(prev, xy=xy, speed=v, accel=accel, yaw_rate=yaw_rate, progress=prev.ego.progress + moved)
        states.append(dataclasses.replace(nxt, step=prev.step + 1))
    return states


def accumulate(states: Sequence[WorldState], config: MetricsConfig | None = None, **finalize) -> dict:
    """Run the accumulator over consecutive states and return `finalize()`'s results."""
    acc = EpisodeAccumulator.init(states[0], config=config)
    for prev, state in zip(states[:-1], states[1:], strict=True):
        acc = acc.update(prev, state)
    return acc.finalize(**finalize)
