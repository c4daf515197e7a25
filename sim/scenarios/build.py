"""Build the initial `WorldState` of B episodes of a scenario, one per seed.

Every procedural value is drawn from the episode's seed (`Stream.SCENARIO`), so
an episode is the same whatever batch it is built in. Capacities (N agents,
L paths, P points, C crosswalks) follow from the scenario's upper bounds, not
from the draws, so they do not depend on the batch either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch

from core.config import Timing
from sim.geometry import ego_center, path_pose, project_to_path
from sim.nonreactive import make_non_reactive
from sim.roads import RoadGeometry, build_road, crosswalk_count, path_count, stack_roads
from sim.scenarios.agents import assemble
from sim.scenarios.context import BuildContext
from sim.scenarios.families import FAMILIES
from sim.scenarios.family import MAX_AGENT_SLOTS
from sim.scenarios.params import Draws, upper
from sim.scenarios.scenario import Scenario
from sim.scenarios.schema import ScenarioError
from sim.state import EgoState, RoadMap, SensorSettings, WorldState

_NOT_GEOMETRY = ("type", "path_points")


def episode_steps(scenario: Scenario, timing: Timing = Timing()) -> int:
    """Sim steps in one episode: duration / sim_dt, rounded."""
    return max(1, round(scenario.duration / timing.sim_dt))


def build_batch(
    scenario: Scenario, seeds: Sequence[int], device: torch.device | str = "cpu", timing: Timing = Timing()
) -> WorldState:
    """The t = 0 world of one episode per seed, on `device`.

    The ego starts on its route with `ego.xy` at the rear axle (the box centre is
    `sim.geometry.ego_center`: wheelbase / 2 ahead). `log_steps` is the episode's
    steps + 1 when the family replays logs, else 1.
    """
    seeds = list(seeds)
    if not seeds:
        raise ScenarioError(f"{scenario.source}: build_batch needs at least one seed")
    draws = Draws(torch.tensor(seeds, dtype=torch.long))
    family = FAMILIES[scenario.family]
    road_values, geoms, episode_geom = _draw_roads(scenario, draws)
    roadmap = _stack(scenario, geoms, episode_geom)
    ego, ego_s = _place_ego(scenario, draws, roadmap, geoms, episode_geom)
    steps = episode_steps(scenario, timing)
    ctx = BuildContext(
        scenario=scenario,
        draws=draws,
        roadmap=roadmap,
        geoms=tuple(geoms),
        episode_geom=tuple(episode_geom),
        road_values=tuple(road_values),
        ego=ego,
        ego_s=ego_s,
        steps=steps,
        log_steps=steps + 1 if family.replays else 1,
        dt=timing.sim_dt,
    )
    blocks = family.build(ctx)
    slots = sum(block.size for block in blocks)
    if slots > MAX_AGENT_SLOTS:  # loading checks `family.slots`; this guards a family whose count is wrong
        raise ScenarioError(
            f"{scenario.source}: the scenario needs {slots} agent slots, more than the simulator's "
            f"capacity of {MAX_AGENT_SLOTS}; lower the agent counts"
        )
    agents, params, log = assemble(blocks, ctx)
    world = WorldState(
        step=torch.zeros(len(seeds), dtype=torch.long),
        seed=draws.seeds.clone(),
        dt=timing.sim_dt,
        ego=ego,
        agents=agents,
        params=params,
        log=log,
        map=roadmap,
        sensor=_sensor(scenario, draws),
    ).to(device)
    if not scenario.reactive:
        # nuPlan's non-reactive mode: every moving agent replays what it did in a
        # rollout without the ego, whatever the ego now does.
        world = make_non_reactive(world, steps)
    return world


def _draw_roads(scenario: Scenario, draws: Draws) -> tuple[list[dict], list[RoadGeometry], list[int]]:
    """Per-episode road parameters, and each distinct layout built once."""
    keys = [k for k in scenario.road if k not in _NOT_GEOMETRY]
    columns = {
        k: [None] * draws.batch if scenario.road[k] is None else draws.episode_values(scenario.road[k], f"road.{k}")
        for k in keys
    }
    values = [{k: columns[k][b] for k in keys} for b in range(draws.batch)]
    index: dict[tuple, int] = {}
    geoms, episode_geom = [], []
    for v in values:
        key = tuple(v.items())
        if key not in index:
            index[key] = len(geoms)
            geoms.append(build_road(scenario.road_type, scenario.road["path_points"], **v))
        episode_geom.append(index[key])
    return values, geoms, episode_geom


def _stack(scenario: Scenario, geoms: list[RoadGeometry], episode_geom: list[int]) -> RoadMap:
    road, kind = scenario.road, scenario.road_type
    oncoming = int(upper(road["oncoming_lanes"])) if "oncoming_lanes" in road else 0
    paths = path_count(kind, int(upper(road["lanes"])), oncoming)
    crosswalks = max(1, crosswalk_count(kind, road.get("crosswalk_s") is not None))
    return stack_roads(geoms, episode_geom, paths=paths, points=road["path_points"], crosswalks=crosswalks)


def _route_name(kind: str, ego: dict[str, Any]) -> str:
    if kind == "intersection":
        return f"west/straight/{ego['lane']}" if ego["turn"] == "straight" else f"west/{ego['turn']}"
    if kind == "merge" and ego["on_ramp"]:
        return "ramp"
    return f"lane/{ego['lane']}"


def _place_ego(
    scenario: Scenario, draws: Draws, roadmap: RoadMap, geoms: list[RoadGeometry], episode_geom: list[int]
) -> tuple[EgoState, torch.Tensor]:
    """The ego on its route at arc length `ego.s` (rear axle), heading along the route."""
    columns = {k: draws.episode_values(p, f"ego.{k}") for k, p in scenario.ego.items()}
    per_episode = [{k: columns[k][b] for k in columns} for b in range(draws.batch)]
    route = torch.tensor(
        [geoms[episode_geom[b]].route(_route_name(scenario.road_type, e)) for b, e in enumerate(per_episode)],
        dtype=torch.long,
    )
    f32 = lambda k: torch.tensor([float(v) for v in columns[k]], dtype=torch.float32)  # noqa: E731
    s = f32("s")
    xy, yaw, _ = path_pose(roadmap, route[:, None], s[:, None])
    zeros = torch.zeros(draws.batch)
    ego = EgoState(
        xy=xy[:, 0],
        yaw=yaw[:, 0],
        speed=f32("speed"),
        accel=zeros,
        steer=zeros.clone(),
        yaw_rate=zeros.clone(),
        length=f32("length"),
        width=f32("width"),
        wheelbase=f32("wheelbase"),
        route=route,
        progress=zeros.clone(),
    )
    # Progress is the arc length of the box centre's projection on the route.
    centre_s, _ = project_to_path(roadmap, route[:, None], ego_center(ego)[:, None])
    return dataclasses.replace(ego, progress=centre_s[:, 0]), s


def _sensor(scenario: Scenario, draws: Draws) -> SensorSettings:
    values = {k: draws.sample(p, f"sensor.{k}").float() for k, p in scenario.sensor.items()}
    return SensorSettings(**values)
