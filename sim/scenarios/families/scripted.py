"""Scripted REPLAY families: lead_brake and cut_in. Their logs are generated here from
closed-form motions along a path, one entry per sim step."""

from __future__ import annotations

import torch
from torch import Tensor

from sim.scenarios.agents import SIZES, Block, path_log, replay
from sim.scenarios.context import BuildContext
from sim.scenarios.family import Family, counted
from sim.scenarios.params import lower
from sim.scenarios.schema import Where, num, section, text
from sim.state import AgentKind

LEAD_FIELDS = {
    "gap": num("initial gap from the ego's front to the lead's rear, m", 20.0, 2.0, 300.0),
    "speed": num("lead speed before braking, m/s", 12.0, 0.0, 40.0),
    "brake_time": num("when the lead starts braking, s", 3.0, 0.0, 600.0),
    "brake_decel": num("deceleration until it stops, m/s^2", 6.0, 0.5, 12.0),
}

CUTTER_FIELDS = {
    "side": text(
        "adjacent lane it starts in (the other side when that lane does not exist)",
        "left",
        ("left", "right"),
        random=True,
    ),
    "cut_gap": num(
        "gap from the ego's front to the cutter's rear when the lane change starts, "
        "assuming the ego keeps its initial speed, m",
        6.0,
        0.5,
        100.0,
    ),
    "speed_delta": num("cutter speed minus the ego's initial speed, m/s", 3.0, -10.0, 20.0),
    "cut_time": num("when the lane change starts, s", 3.0, 0.0, 600.0),
    "cut_duration": num("duration of the lane change, s", 2.0, 0.5, 10.0),
}


def _times(ctx: BuildContext) -> Tensor:
    return torch.arange(ctx.log_steps, dtype=torch.float32) * ctx.dt  # (TL,)


def _ego_front_s(ctx: BuildContext) -> Tensor:
    """Arc length `[B]` of the ego's front bumper on its route (box centre + length / 2)."""
    return ctx.ego_s + ctx.ego.wheelbase / 2 + ctx.ego.length / 2


def build_lead_brake(ctx: BuildContext) -> list[Block]:
    """The lead drives ahead of the ego at constant speed, then brakes to a stop."""
    t = _times(ctx)[None]  # (1, TL)
    v = ctx.sample("lead.speed")[:, None]  # (B, 1)
    tb = ctx.sample("lead.brake_time")[:, None]
    a = ctx.sample("lead.brake_decel")[:, None]
    half = SIZES[AgentKind.VEHICLE][0] / 2
    s0 = _ego_front_s(ctx)[:, None] + ctx.sample("lead.gap")[:, None] + half
    braking = (t - tb).clamp_min(0.0).minimum(v / a)  # time spent braking, until the stop
    s = s0 + v * t.minimum(tb) + v * braking - 0.5 * a * braking**2  # (B, TL)
    speed = torch.where(t < tb, v, (v - a * (t - tb)).clamp_min(0.0))
    path = ctx.ego.route[:, None]  # (B, 1)
    xy, yaw = path_log(
        ctx, path, s[:, None], torch.zeros_like(s)[:, None], speed[:, None], torch.zeros_like(s)[:, None]
    )
    length = torch.gather(ctx.roadmap.path_length, 1, path)
    valid = (s + half <= length)[:, None]  # it leaves the log when it drives off the road
    return [replay(ctx, kind=AgentKind.VEHICLE, xy=xy, yaw=yaw, valid=valid, speed=v, path=path, s=s0)]


def build_cut_in(ctx: BuildContext) -> list[Block]:
    """The cutter overtakes in the adjacent lane and changes into the ego's lane just ahead of it.

    Arc length maps between the index-matched neighbours by fraction of length,
    and the cutter's lateral offset eases (smoothstep) over one lane width.
    """
    route = ctx.ego.route[:, None]  # (B, 1)
    left = torch.gather(ctx.roadmap.path_left, 1, route)
    right = torch.gather(ctx.roadmap.path_right, 1, route)
    prefer_left = ctx.draws.episode_values(ctx.param("cutter.side"), "cut_in.cutter.side")
    prefer_left = torch.tensor([side == "left" for side in prefer_left])[:, None]
    from_left = (prefer_left & (left >= 0)) | (right < 0)
    path = torch.where(from_left, left, right)  # (B, 1)
    scale = torch.gather(ctx.roadmap.path_length, 1, path) / torch.gather(ctx.roadmap.path_length, 1, route)
    t = _times(ctx)[None]  # (1, TL)
    tc = ctx.sample("cutter.cut_time")[:, None]
    dur = ctx.sample("cutter.cut_duration")[:, None]
    v_ego = ctx.ego.speed[:, None]
    v = (v_ego + ctx.sample("cutter.speed_delta")[:, None]).clamp_min(0.0)
    half = SIZES[AgentKind.VEHICLE][0] / 2
    centre_at_cut = _ego_front_s(ctx)[:, None] + v_ego * tc + ctx.sample("cutter.cut_gap")[:, None] + half
    s0 = centre_at_cut * scale - v * tc  # on the cutter's own path
    s = s0 + v * t  # (B, TL)
    width = torch.gather(ctx.roadmap.path_width, 1, route)
    offset = torch.where(from_left, -width, width)  # towards the ego's lane
    x = ((t - tc) / dur).clamp(0.0, 1.0)
    d = offset * x * x * (3 - 2 * x)
    dd_dt = offset * 6 * x * (1 - x) / dur
    ds_dt = v.expand_as(s)  # (B, TL): constant speed along the path
    xy, yaw = path_log(ctx, path, s[:, None], d[:, None], ds_dt[:, None], dd_dt[:, None])
    length = torch.gather(ctx.roadmap.path_length, 1, path)
    valid = ((s - half >= 0) & (s + half <= length))[:, None]  # enters or leaves the road at its ends
    return [replay(ctx, kind=AgentKind.VEHICLE, xy=xy, yaw=yaw, valid=valid, speed=v, path=path, s=s0)]


def _check_two_lanes(scenario, where: Where) -> None:
    if lower(scenario.road["lanes"]) < 2:
        where.child("road").child("lanes").fail("family 'cut_in' needs at least 2 lanes in the ego's direction")


LEAD_BRAKE = Family(
    name="lead_brake",
    summary="the vehicle ahead of the ego brakes hard to a stop at a random time (scripted REPLAY)",
    road_types=("straight", "curved"),
    sections={"lead": section("the braking lead vehicle", LEAD_FIELDS)},
    build=build_lead_brake,
    slots=counted(scripted=1),
    replays=True,
)

CUT_IN = Family(
    name="cut_in",
    summary="a vehicle in the adjacent lane cuts in close in front of the ego (scripted REPLAY)",
    road_types=("straight", "curved"),
    sections={"cutter": section("the cutting-in vehicle", CUTTER_FIELDS)},
    build=build_cut_in,
    slots=counted(scripted=1),
    replays=True,
    check=_check_two_lanes,
)
