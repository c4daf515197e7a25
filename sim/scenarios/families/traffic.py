"""IDM traffic families: cruising, merge, unprotected_left, and the empty ghost_road."""

from __future__ import annotations

import torch
from torch import Tensor

from sim.scenarios.agents import SIZES, Block, idm_params, kind_sizes, on_path
from sim.scenarios.context import BuildContext
from sim.scenarios.families.queues import fits_on_path, queue_offsets, skip_ego
from sim.scenarios.family import Family, counted
from sim.scenarios.params import Fixed
from sim.scenarios.schema import Where, integer, num, section
from sim.scenarios.sections import idm_section
from sim.state import AgentKind, Behaviour

PHASE_SPAN = 10.0  # m

TRAFFIC_FIELDS = {
    "vehicles": integer("IDM vehicles, spread round-robin over every lane (oncoming included)", 12, 0, 64),
    "cyclists": integer("IDM cyclists in lane 0", 0, 0, 16),
    "gap": num("bumper-to-bumper gap between consecutive agents of a lane, m, per agent", 25.0, 2.0, 300.0),
    "speed": num("initial speed of the vehicles, m/s, per vehicle", 12.0, 0.0, 40.0),
    "desired_speed": num("IDM desired speed of the vehicles, m/s, per vehicle", 14.0, 0.5, 40.0),
    "cyclist_speed": num("initial and desired speed of the cyclists, m/s, per cyclist", 5.0, 0.5, 12.0),
    "idm": idm_section(),
}


def lane_traffic(ctx: BuildContext, section: str) -> Block:
    """Vehicles round-robin over all lanes and cyclists in lane 0, queued from each lane's start.

    Paths of parallel roads are numbered lanes first, then oncoming lanes, so
    lane index == path index. The ego's lane queue skips over the ego.
    """
    Kv, Kc = ctx.upper(f"{section}.vehicles"), ctx.upper(f"{section}.cyclists")
    K = Kv + Kc
    idx = torch.arange(K)
    is_cyclist = (idx >= Kv).expand(ctx.batch, K)
    n_v, n_c = ctx.sample(f"{section}.vehicles"), ctx.sample(f"{section}.cyclists")
    valid = torch.where(is_cyclist, idx - Kv < n_c[:, None], idx < n_v[:, None])
    lanes = torch.tensor([int(v["lanes"]) + int(v.get("oncoming_lanes", 0)) for v in ctx.road_values])
    lane = torch.where(is_cyclist, 0, idx % lanes[:, None])  # (B, K)
    kind = torch.where(is_cyclist, int(AgentKind.CYCLIST), int(AgentKind.VEHICLE))
    length = kind_sizes(kind)[0]
    gap = ctx.sample(f"{section}.gap", (K,))
    # Each lane's queue starts at a random phase in [0, PHASE_SPAN) m.
    phase = ctx.draws.uniform(f"{section}.phase", (int(lanes.max()),)).float() * PHASE_SPAN
    rear = torch.gather(phase, 1, lane) + queue_offsets(ctx, f"{section}.order", lane, valid, length, gap)
    rear = skip_ego(ctx, lane, valid, rear, length)
    s = rear + length / 2
    valid = valid & fits_on_path(ctx, lane, s, length)
    cyclist_speed = ctx.sample(f"{section}.cyclist_speed", (K,))
    speed = torch.where(is_cyclist, cyclist_speed, ctx.sample(f"{section}.speed", (K,)))
    desired = torch.where(is_cyclist, cyclist_speed, ctx.sample(f"{section}.desired_speed", (K,)))
    params = idm_params(ctx, ctx.param(f"{section}.idm"), f"{ctx.scenario.family}.{section}.idm", K, desired)
    params["politeness"] = torch.where(is_cyclist, -1.0, params["politeness"])  # cyclists keep their lane
    return on_path(
        ctx, kind=kind, behaviour=Behaviour.IDM, path=lane, s=s, valid=valid, speed=speed, params=params, droppable=True
    )


def build_cruising(ctx: BuildContext) -> list[Block]:
    return _traffic_blocks(ctx, "traffic")


def build_merge(ctx: BuildContext) -> list[Block]:
    return _traffic_blocks(ctx, "traffic")


def _traffic_blocks(ctx: BuildContext, section: str) -> list[Block]:
    """The section's lane traffic, or no block when it can hold no agent (vehicles: 0, cyclists: 0)."""
    if ctx.upper(f"{section}.vehicles") + ctx.upper(f"{section}.cyclists") == 0:
        return []
    return [lane_traffic(ctx, section)]


def build_ghost_road(ctx: BuildContext) -> list[Block]:
    return []


ONCOMING_FIELDS = {
    "vehicles": integer("oncoming vehicles, round-robin over the east arm's straight lanes", 6, 0, 32),
    "gap": num("bumper-to-bumper gap in the oncoming stream, m, per vehicle", 15.0, 2.0, 200.0),
    "first_distance": num("distance from the box edge back to the first oncoming vehicle's front, m", 10.0, 0.0, 300.0),
    "speed": num("initial speed, m/s, per vehicle", 10.0, 0.0, 40.0),
    "desired_speed": num("IDM desired speed, m/s, per vehicle", 12.0, 0.5, 40.0),
    "idm": idm_section(),
}


def build_unprotected_left(ctx: BuildContext) -> list[Block]:
    """A non-yielding stream driving straight through from the east arm, front vehicle nearest the box."""
    K = ctx.upper("oncoming.vehicles")
    idx = torch.arange(K)
    valid = idx < ctx.sample("oncoming.vehicles")[:, None]  # (B, K)
    lanes = torch.tensor([int(v["lanes"]) for v in ctx.road_values])
    lane_paths = _east_straight_paths(ctx, int(lanes.max()))  # (B, lanes_max)
    lane = idx % lanes[:, None]
    path = torch.gather(lane_paths, 1, lane)
    length = torch.full((ctx.batch, K), SIZES[AgentKind.VEHICLE][0])
    gap = ctx.sample("oncoming.gap", (K,))
    behind_front = queue_offsets(ctx, "oncoming.order", lane, valid, length, gap)
    front = ctx.road("arm_length")[:, None] - ctx.sample("oncoming.first_distance")[:, None] - behind_front
    s = front - length / 2
    valid = valid & fits_on_path(ctx, path, s, length)
    params = idm_params(
        ctx, ctx.param("oncoming.idm"), "unprotected_left.oncoming.idm", K, ctx.sample("oncoming.desired_speed", (K,))
    )
    params["yields_to_ego"] = torch.zeros(ctx.batch, K, dtype=torch.bool)  # they do not yield
    return [
        on_path(
            ctx,
            kind=AgentKind.VEHICLE,
            behaviour=Behaviour.IDM,
            path=path,
            s=s,
            valid=valid,
            speed=ctx.sample("oncoming.speed", (K,)),
            params=params,
            droppable=True,
        )
    ]


def _east_straight_paths(ctx: BuildContext, lanes: int) -> Tensor:
    return torch.stack([ctx.path_index([f"east/straight/{k}"] * ctx.batch) for k in range(lanes)], dim=1)


def _check_left_turn(scenario, where: Where) -> None:
    if scenario.ego["turn"] != Fixed("left"):
        where.child("ego").child("turn").fail("family 'unprotected_left' needs the ego to turn 'left'")


def _check_on_ramp(scenario, where: Where) -> None:
    if scenario.ego["on_ramp"] != Fixed(True):
        where.child("ego").child("on_ramp").fail("family 'merge' starts the ego on the ramp: expected true")


CRUISING = Family(
    name="cruising",
    summary="IDM traffic with MOBIL lane changes, including slow cyclists, on a straight or curved road",
    road_types=("straight", "curved"),
    sections={"traffic": section("IDM traffic", TRAFFIC_FIELDS)},
    build=build_cruising,
    slots=counted("traffic.vehicles", "traffic.cyclists"),
)

MERGE = Family(
    name="merge",
    summary="the ego merges from an on-ramp into dense main-lane IDM traffic",
    road_types=("merge",),
    sections={"traffic": section("main-lane IDM traffic", TRAFFIC_FIELDS)},
    build=build_merge,
    slots=counted("traffic.vehicles", "traffic.cyclists"),
    check=_check_on_ramp,
)

UNPROTECTED_LEFT = Family(
    name="unprotected_left",
    summary="the ego turns left across a stream of oncoming IDM traffic that does not yield",
    road_types=("intersection",),
    sections={"oncoming": section("oncoming stream", ONCOMING_FIELDS)},
    build=build_unprotected_left,
    slots=counted("oncoming.vehicles"),
    check=_check_left_turn,
)

GHOST_ROAD = Family(
    name="ghost_road",
    summary="an empty road seen through a sensor full of false positives",
    road_types=("straight", "curved"),
    sections={},
    build=build_ghost_road,
    slots=counted(),
)
