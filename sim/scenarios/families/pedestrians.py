"""Pedestrian families: crosswalk_crowd (WALK pedestrians crossing ahead) and
occluded_pedestrian (a pedestrian stepping out from behind parked vehicles)."""

from __future__ import annotations

import torch
from torch import Tensor

from sim.geometry import path_pose, project_to_path, rotate
from sim.scenarios.agents import SIZES, Block, on_path, walkers
from sim.scenarios.context import BuildContext
from sim.scenarios.family import Family, counted
from sim.scenarios.params import lower, upper
from sim.scenarios.schema import ScenarioError, Where, integer, num, section
from sim.state import AgentKind, Behaviour

WAIT_SPACING = 0.9  # m between waiting pedestrians (boxes are 0.5 x 0.6 m; jitter stays below 0.1 m)
WAIT_JITTER = 0.1  # m

CROWD_FIELDS = {
    "pedestrians": integer("pedestrians crossing", 12, 0, 64),
    "speed": num("walking speed, m/s, per pedestrian", 1.3, 0.3, 3.0),
    "start_time": num("when each pedestrian starts to cross, s", 0.0, 0.0, 600.0),
    "pause_prob": num("probability that a pedestrian pauses on the way", 0.0, 0.0, 1.0),
    "pause_at": num("fraction of the crossing where a pausing pedestrian stops", 0.5, 0.0, 1.0),
    "pause_duration": num("length of a pause, s", 2.0, 0.0, 60.0),
    "kerb_offset": num("distance from the road edge to the first waiting row, m", 0.5, 0.0, 5.0),
}


def _crosswalk_ahead(ctx: BuildContext) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Extent (s_lo, s_hi, d_lo, d_hi) `[B]` in the ego's route frame of the first crosswalk
    the route crosses ahead of the ego's front bumper."""
    rm, B = ctx.roadmap, ctx.batch
    C = rm.crosswalk.shape[1]
    route = ctx.ego.route[:, None].expand(B, C)
    centre = rm.crosswalk.mean(dim=2)  # (B, C, 2)
    s_c, _ = project_to_path(rm, route, centre)
    origin, yaw, _ = path_pose(rm, route, s_c)
    local = rotate(rm.crosswalk - origin[:, :, None], -yaw[:, :, None])  # (B, C, 4, 2)
    s_lo, s_hi = s_c + local[..., 0].amin(-1), s_c + local[..., 0].amax(-1)
    d_lo, d_hi = local[..., 1].amin(-1), local[..., 1].amax(-1)
    front = (ctx.ego_s + ctx.ego.wheelbase / 2 + ctx.ego.length / 2)[:, None]
    crossed = rm.crosswalk_valid & (d_lo < 0) & (d_hi > 0) & (s_lo > front)
    if not bool(crossed.any(-1).all()):
        bad = ctx.draws.seeds[~crossed.any(-1)].tolist()
        raise ScenarioError(
            f"{ctx.scenario.source}: no crosswalk on the ego's route ahead of it "
            f"(seeds {bad}); set road.crosswalk_s beyond ego.s or use an intersection"
        )
    pick = torch.where(crossed, s_lo, torch.full_like(s_lo, float("inf"))).argmin(-1, keepdim=True)
    take = lambda x: torch.gather(x, 1, pick).squeeze(1)  # noqa: E731
    return take(s_lo), take(s_hi), take(d_lo), take(d_hi)


def build_crosswalk_crowd(ctx: BuildContext) -> list[Block]:
    """Pedestrians wait in a grid beside the crosswalk on either side and cross at random times."""
    K, B = ctx.upper("crowd.pedestrians"), ctx.batch
    s_lo, s_hi, d_lo, d_hi = (x[:, None] for x in _crosswalk_ahead(ctx))
    valid = torch.arange(K) < ctx.sample("crowd.pedestrians")[:, None]  # (B, K)
    from_right = ctx.draws.uniform("crosswalk_crowd.side", (K,)) < 0.5
    # Rank of each pedestrian among those waiting on its side -> its cell in that side's grid.
    same_side = (from_right[:, :, None] == from_right[:, None, :]) & torch.ones(K, K, dtype=torch.bool).tril(-1)
    rank = (same_side & valid[:, None, :]).sum(-1)  # (B, K)
    columns = ((s_hi - s_lo - WAIT_SPACING) / WAIT_SPACING).floor().clamp_min(0).long() + 1
    col, row = rank % columns, torch.div(rank, columns, rounding_mode="floor")
    used = (s_hi - s_lo) - (columns - 1) * WAIT_SPACING
    jitter = (ctx.draws.uniform("crosswalk_crowd.jitter", (K, 2)).float() * 2 - 1) * WAIT_JITTER
    s = s_lo + used / 2 + col * WAIT_SPACING + jitter[..., 0]
    kerb = ctx.sample("crowd.kerb_offset")[:, None]
    depth = kerb + row * WAIT_SPACING + jitter[..., 1]
    d_start = torch.where(from_right, d_lo - depth, d_hi + depth)
    d_end = torch.where(from_right, d_hi + depth, d_lo - depth)
    pauses = ctx.draws.uniform("crosswalk_crowd.pauses", (K,)).float() < ctx.sample("crowd.pause_prob")[:, None]
    return [
        walkers(
            ctx,
            start=(s, d_start),
            end=(s, d_end),
            valid=valid,
            speed=ctx.sample("crowd.speed", (K,)),
            start_time=ctx.sample("crowd.start_time", (K,)),
            pause_at=torch.where(pauses, ctx.sample("crowd.pause_at", (K,)), torch.full((B, K), 2.0)),
            pause_duration=ctx.sample("crowd.pause_duration", (K,)),
        )
    ]


PARKED_FIELDS = {
    "vehicles": integer("parked vehicles in a row on the shoulder", 6, 1, 30),
    "first_distance": num("gap from the ego's front to the first parked vehicle's rear, m", 12.0, 0.0, 300.0),
    "gap": num("bumper-to-bumper gap between parked vehicles, m, per gap", 2.5, 1.2, 30.0),
}

PEDESTRIAN_FIELDS = {
    "behind": integer("parked vehicle (0 = nearest the ego) the pedestrian waits just beyond", 1, 0, 29),
    "step_time": num("when the pedestrian steps out, s", 2.0, 0.0, 600.0),
    "speed": num("walking speed, m/s", 1.5, 0.3, 4.0),
    "walk_distance": num("how far it walks out towards the far side of the road, m", 8.0, 0.5, 40.0),
}


def build_occluded_pedestrian(ctx: BuildContext) -> list[Block]:
    """A row of STATIC vehicles on the shoulder right of lane 0; a pedestrian stands in the
    gap beyond one of them and walks out across the road at a random time."""
    K, B = ctx.upper("parked.vehicles"), ctx.batch
    route = ctx.ego.route[:, None]
    width, shoulder = ctx.road("lane_width")[:, None], ctx.road("shoulder_width")[:, None]
    # Parallel roads number lanes from the kerb, so the route's index is the ego's lane.
    d_parked = -(route.float() * width + width / 2 + shoulder / 2)
    count = ctx.sample("parked.vehicles")[:, None]
    valid = torch.arange(K) < count  # (B, K)
    length = SIZES[AgentKind.VEHICLE][0]
    gap = ctx.sample("parked.gap", (K,))
    front = (ctx.ego_s + ctx.ego.wheelbase / 2 + ctx.ego.length / 2)[:, None]
    rear = front + ctx.sample("parked.first_distance")[:, None] + torch.cumsum(length + gap, 1) - (length + gap)
    s = rear + length / 2
    route_length = torch.gather(ctx.roadmap.path_length, 1, route)
    valid = valid & (s + length / 2 <= route_length)
    parked = on_path(
        ctx,
        kind=AgentKind.VEHICLE,
        behaviour=Behaviour.STATIC,
        path=route.expand(B, K),
        s=s,
        d=d_parked.expand(B, K),
        valid=valid,
    )
    last = (valid.sum(1, keepdim=True) - 1).clamp_min(0)
    hide = ctx.sample("pedestrian.behind")[:, None].minimum(last)  # (B, 1)
    s_ped = torch.gather(rear + length + gap / 2, 1, hide)  # middle of the gap beyond that vehicle
    d_ped = d_parked - 0.4  # kerb side of the row: hidden from the ego
    walker = walkers(
        ctx,
        start=(s_ped, d_ped),
        end=(s_ped, d_ped + ctx.sample("pedestrian.walk_distance")[:, None]),
        valid=valid.any(1, keepdim=True),
        speed=ctx.sample("pedestrian.speed")[:, None],
        start_time=ctx.sample("pedestrian.step_time")[:, None],
    )
    return [parked, walker]


def _check_crosswalk(scenario, where: Where) -> None:
    """The first crosswalk on the route must lie ahead of the ego's front for every draw."""
    road, ego = scenario.road, scenario.ego
    at = where.child("road")
    front = upper(ego["s"]) + upper(ego["length"])  # rear axle + wheelbase / 2 + length / 2 < s + length
    if scenario.road_type == "intersection":
        near = lower(road["arm_length"]) - upper(road["crosswalk_gap"]) - upper(road["crosswalk_width"])
        if front >= near:
            where.child("ego").child("s").fail(
                f"family 'crosswalk_crowd' needs the ego to start before the "
                f"crosswalk: expected ego.s + ego.length < {near:g} m"
            )
        return
    if road["crosswalk_s"] is None:
        at.child("crosswalk_s").fail("family 'crosswalk_crowd' needs a crosswalk on a straight or curved road")
    if lower(road["crosswalk_s"]) - upper(road["crosswalk_width"]) / 2 <= front:
        at.child("crosswalk_s").fail(
            f"expected the crosswalk ahead of the ego: > ego.s + ego.length "
            f"+ crosswalk_width / 2 (up to {front + upper(road['crosswalk_width']) / 2:g} m)"
        )


def _check_shoulder(scenario, where: Where) -> None:
    need = SIZES[AgentKind.VEHICLE][1] + 0.3
    if lower(scenario.road["shoulder_width"]) < need:
        where.child("road").child("shoulder_width").fail(
            f"family 'occluded_pedestrian' parks vehicles on the shoulder: expected >= {need:g} m"
        )


CROSSWALK_CROWD = Family(
    name="crosswalk_crowd",
    summary="many WALK pedestrians cross at a crosswalk on the ego's route at random times, some pausing",
    road_types=("intersection", "straight", "curved"),
    sections={"crowd": section("the crossing pedestrians", CROWD_FIELDS)},
    build=build_crosswalk_crowd,
    slots=counted("crowd.pedestrians"),
    check=_check_crosswalk,
)

OCCLUDED_PEDESTRIAN = Family(
    name="occluded_pedestrian",
    summary="a pedestrian steps into the road from behind a row of parked vehicles",
    road_types=("straight", "curved"),
    sections={
        "parked": section("the parked row", PARKED_FIELDS),
        "pedestrian": section("the hidden pedestrian", PEDESTRIAN_FIELDS),
    },
    build=build_occluded_pedestrian,
    slots=counted("parked.vehicles", scripted=1),
    check=_check_shoulder,
)
