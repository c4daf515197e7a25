"""custom: agent groups listed in the scenario file, so a new scenario needs no code."""

from __future__ import annotations

import torch
from torch import Tensor

from sim.scenarios.agents import SIZES, Block, idm_params, on_path, walkers
from sim.scenarios.context import BuildContext
from sim.scenarios.family import Family, largest_count
from sim.scenarios.params import Fixed, upper
from sim.scenarios.schema import Field, ScenarioError, Where, flag, integer, items, num, text
from sim.scenarios.sections import idm_section
from sim.state import AgentKind, Behaviour

KINDS = {"vehicle": AgentKind.VEHICLE, "cyclist": AgentKind.CYCLIST, "pedestrian": AgentKind.PEDESTRIAN}
BEHAVIOURS = {"idm": Behaviour.IDM, "static": Behaviour.STATIC, "walk": Behaviour.WALK}
SPACING_MARGIN = 0.5  # m between the boxes of one group's lined-up agents

GROUP_FIELDS = {
    "kind": text("agent kind", options=tuple(KINDS)),
    "behaviour": text("idm (lane following), static, or walk (pedestrians)", options=tuple(BEHAVIOURS)),
    "count": integer("agents in the group", 1, 0, 64),
    "path": Field(
        "path", "path the group stands or drives on: an index or 'route' (idm, static)", "route", random=False
    ),
    "s": Field(
        "range",
        "arc-length range along `path`; agents are spread evenly over it, m (idm, static)",
        None,
        0.0,
        2000.0,
        random=False,
    ),
    "d": num("lateral offset from `path`, left > 0, m (static)", 0.0, -30.0, 30.0),
    "speed": num("initial speed (idm) or walking speed (walk), m/s, per agent", 0.0, 0.0, 40.0),
    "desired_speed": num("IDM desired speed, m/s, per agent (default: speed)", None, 0.0, 40.0),
    "yields_to_ego": flag("whether the agents treat the ego as an obstacle", True),
    "idm": idm_section(),
    "from_s": num("walk start: arc length along the ego's route, m", None, -100.0, 2000.0),
    "from_d": num("walk start: offset left of the route, m", 0.0, -50.0, 50.0),
    "to_s": num("walk end: arc length along the ego's route, m", None, -100.0, 2000.0),
    "to_d": num("walk end: offset left of the route, m", 0.0, -50.0, 50.0),
    "start_time": num("when a walker starts, s", 0.0, 0.0, 600.0),
    "pause_at": num("fraction of the walk where it pauses (> 1: never)", 2.0, 0.0, 2.0),
    "pause_duration": num("pause length, s", 0.0, 0.0, 60.0),
}


def _group_block(ctx: BuildContext, g: int, group) -> Block:
    name = f"agents[{g}]"
    draw = lambda key, K: ctx.draws.sample(group[key], f"custom.{name}.{key}", (K,))  # noqa: E731
    K = int(upper(group["count"]))
    count = ctx.draws.sample(group["count"], f"custom.{name}.count")[:, None]
    valid = torch.arange(K) < count  # (B, K)
    kind, behaviour = KINDS[group["kind"]], BEHAVIOURS[group["behaviour"]]
    speed = draw("speed", K).float()
    if behaviour == Behaviour.WALK:
        return walkers(
            ctx,
            start=(draw("from_s", K).float(), draw("from_d", K).float()),
            end=(draw("to_s", K).float(), draw("to_d", K).float()),
            valid=valid,
            speed=speed,
            start_time=draw("start_time", K).float(),
            pause_at=draw("pause_at", K).float(),
            pause_duration=draw("pause_duration", K).float(),
            droppable=True,
        )
    path = _path(ctx, group["path"], name, K)
    lo, hi = group["s"]
    slot = torch.arange(K)[None].float()
    s = lo + (slot + 0.5) * (hi - lo) / count.clamp_min(1).float()  # centres of `count` equal bins
    desired = speed if group["desired_speed"] is None else draw("desired_speed", K).float()
    params = idm_params(ctx, group["idm"], f"custom.{name}.idm", K, desired) if behaviour == Behaviour.IDM else {}
    params["yields_to_ego"] = draw("yields_to_ego", K)
    d = draw("d", K).float()
    moving = speed if behaviour == Behaviour.IDM else torch.zeros_like(speed)
    return on_path(
        ctx,
        kind=kind,
        behaviour=behaviour,
        path=path,
        s=s,
        d=d,
        valid=valid,
        speed=moving,
        params=params,
        droppable=True,
    )


def _path(ctx: BuildContext, path, name: str, K: int) -> Tensor:
    if path == "route":
        return ctx.ego.route[:, None].expand(ctx.batch, K)
    paths = ctx.roadmap.path_valid.sum(1)
    if bool((paths <= path).any()):
        raise ScenarioError(
            f"{ctx.scenario.source}: {name}.path: index {path} is beyond the road's "
            f"{int(paths.min())} paths (see docs/scenarios.md for the path order)"
        )
    return torch.full((ctx.batch, K), path, dtype=torch.long)


def build_custom(ctx: BuildContext) -> list[Block]:
    return [_group_block(ctx, g, group) for g, group in enumerate(ctx.param("agents"))]


def _check_groups(scenario, where: Where) -> None:
    for g, group in enumerate(scenario.sections["agents"]):
        at = where.child("agents").item(g)
        kind, behaviour = group["kind"], group["behaviour"]
        if behaviour == "walk":
            if kind != "pedestrian":
                at.child("kind").fail("behaviour 'walk' is for kind 'pedestrian'")
            for key in ("from_s", "to_s"):
                if group[key] is None:
                    at.child(key).fail("missing key; a walking group needs from_s and to_s")
            continue
        if behaviour == "idm" and kind == "pedestrian":
            at.child("behaviour").fail("pedestrians 'walk' or stand 'static'; 'idm' is for vehicles and cyclists")
        if group["s"] is None:
            at.child("s").fail("missing key; an idm or static group needs an arc-length range [lo, hi]")
        if behaviour == "idm" and group["d"] != Fixed(0.0):
            at.child("d").fail("idm agents drive on the path centre: expected 0")
        lo, hi = group["s"]
        most = upper(group["count"])
        if most > 1 and (hi - lo) / most < SIZES[KINDS[kind]][0] + SPACING_MARGIN:
            at.child("s").fail(f"range of {hi - lo:g} m is too short to line up {most} {kind}s without overlap")


CUSTOM = Family(
    name="custom",
    summary="agent groups listed in the file: IDM traffic, static obstacles and walkers, on any road",
    road_types=("straight", "curved", "intersection", "merge"),
    sections={"agents": items("agent groups", GROUP_FIELDS)},
    build=build_custom,
    slots=lambda scenario: sum(largest_count(group["count"]) for group in scenario.sections["agents"]),
    check=_check_groups,
)
