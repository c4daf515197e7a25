"""ethucy_crowd: pedestrians REPLAY real ETH/UCY tracks, placed across the ego's route ahead."""

from __future__ import annotations

import functools
import math
import os
import re
from pathlib import Path

import numpy as np
import torch

from sim import ethucy
from sim.geometry import path_pose, rotate, wrap_angle
from sim.scenarios.agents import Block, replay
from sim.scenarios.context import BuildContext
from sim.scenarios.family import Family, counted
from sim.scenarios.schema import MissingData, ScenarioError, Where, integer, num, section, text
from sim.state import AgentKind

DEFAULT_DATA = "${DRIVESTACK_DATA:-../shared/data}/ethucy/eth/test/biwi_eth.txt"
_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")
# The only environment variables a scenario file may read: a file from someone else must not be able to pull
# any other value of the environment (a secret) into paths, errors and results.
DATA_VARIABLES = ("DRIVESTACK_DATA",)

CROWD_FIELDS = {
    "data": text(
        "ETH/UCY text file; ${DRIVESTACK_DATA} and ${DRIVESTACK_DATA:-default} expand from the environment "
        "(no other variable), and a relative path is taken from the current working directory",
        DEFAULT_DATA,
    ),
    "max_agents": integer("most pedestrians replayed (agent slots)", 24, 1, 256, random=False),
    "window_start": num("start of the replayed window, as a fraction of the recording", 0.5, 0.0, 1.0),
    "distance_ahead": num(
        "arc length from the ego's front to the crowd's centroid along the route, m", 30.0, 0.0, 1000.0
    ),
    "lateral_offset": num("offset of the centroid left of the route, m", 0.0, -50.0, 50.0),
    "rotation": num("rotation of the recorded scene relative to the route heading, degrees", 0.0, -360.0, 360.0),
}


def expand_data_path(template: str, where: str) -> Path:
    """Expand `${VAR}` / `${VAR:-default}` for the variables of `DATA_VARIABLES`; any other variable, and an
    unset one without a default, is an error (naming the variable, never its value)."""

    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name not in DATA_VARIABLES:
            raise ScenarioError(
                f"{where}: ${{{name}}} is not a variable a scenario may read; allowed: {', '.join(DATA_VARIABLES)}"
            )
        value = os.environ.get(name)
        if value is None:
            if default is None:
                raise ScenarioError(
                    f"{where}: environment variable {name} is not set; set {name} to the data folder that holds ethucy/"
                )
            return default
        return value

    return Path(_VARIABLE.sub(substitute, template))


@functools.lru_cache(maxsize=8)
def _tracks(path: str, mtime_ns: int) -> ethucy.RawTracks:
    """Parsed tracks, cached per file version (loading checks them, building replays them)."""
    return ethucy.load_tracks(path)


@functools.lru_cache(maxsize=8)
def _grid(path: str, mtime_ns: int, dt: float) -> ethucy.GridTracks:
    """Resampled tracks, cached per file version and step."""
    return ethucy.resample(_tracks(path, mtime_ns), dt)


def load_grid(ctx: BuildContext) -> ethucy.GridTracks:
    template = ctx.param("crowd.data")
    where = f"{ctx.scenario.source}: crowd.data"
    path = expand_data_path(template, where)
    if not path.is_file():
        raise MissingData(
            f"{where}: ETH/UCY file {path} not found (from {template!r}, working directory {Path.cwd()}); "
            f"set DRIVESTACK_DATA to the folder that holds ethucy/, e.g. export DRIVESTACK_DATA=/data"
        )
    return _grid(str(path.resolve()), path.stat().st_mtime_ns, ctx.dt)


def check_data(scenario, where: Where) -> None:
    """At load: `crowd.data` reads only allowed variables, and a file that is there parses. A file that is
    not there is reported when the scenario is built: the data may be provided on the machine that runs it."""
    at = where.child("crowd").child("data")
    path = expand_data_path(scenario.param("crowd.data"), f"{where.file}: {at.path}")
    if path.is_file():
        try:
            _tracks(str(path.resolve()), path.stat().st_mtime_ns)
        except ethucy.TrackFormatError as exc:
            at.fail(f"malformed ETH/UCY file: {exc}")


def build_ethucy_crowd(ctx: BuildContext) -> list[Block]:
    """Cut a window per episode, move its centroid to the route ahead and turn it to the route."""
    grid = load_grid(ctx)
    B, N, TL = ctx.batch, ctx.param("crowd.max_agents"), ctx.log_steps
    frac = ctx.sample("crowd.window_start").double()
    starts = (frac * max(grid.steps - TL, 0)).floor().long().tolist()
    xy, yaw = np.zeros((B, N, TL, 2)), np.zeros((B, N, TL))
    speed, valid = np.zeros((B, N)), np.zeros((B, N, TL), bool)
    windows: dict[int, ethucy.ReplayWindow] = {}
    for b, start in enumerate(starts):  # build time: one window per distinct start
        w = windows.setdefault(start, ethucy.cut_window(grid, start, TL, N))
        n = len(w.agent_ids)
        xy[b, :n], yaw[b, :n], valid[b, :n], speed[b, :n] = w.xy, w.yaw, w.valid, w.speed[:, 0]
    xy_t, valid_t = torch.from_numpy(xy), torch.from_numpy(valid)
    weight = valid_t[..., None].double()
    centroid = (xy_t * weight).sum((1, 2)) / weight.sum((1, 2)).clamp_min(1.0)  # (B, 2)
    front = ctx.ego_s + ctx.ego.wheelbase / 2 + ctx.ego.length / 2
    target_s = (front + ctx.sample("crowd.distance_ahead"))[:, None]
    target, route_yaw, _ = path_pose(
        ctx.roadmap, ctx.ego.route[:, None], target_s, ctx.sample("crowd.lateral_offset")[:, None]
    )
    theta = (route_yaw[:, 0] + ctx.sample("crowd.rotation") * (math.pi / 180)).double()  # (B,)
    moved = rotate(xy_t - centroid[:, None, None], theta[:, None, None]) + target[:, 0, None, None].double()
    moved = torch.where(valid_t[..., None], moved, torch.zeros_like(moved))
    turned = wrap_angle(torch.from_numpy(yaw) + theta[:, None, None]) * valid_t
    return [
        replay(
            ctx,
            kind=AgentKind.PEDESTRIAN,
            xy=moved,
            yaw=turned,
            valid=valid_t,
            speed=torch.from_numpy(speed),
            droppable=True,
        )
    ]


ETHUCY_CROWD = Family(
    name="ethucy_crowd",
    summary="pedestrians replay real ETH/UCY tracks across the ego's route ahead",
    road_types=("straight", "curved"),
    sections={"crowd": section("the replayed crowd", CROWD_FIELDS)},
    build=build_ethucy_crowd,
    slots=counted("crowd.max_agents"),
    replays=True,
    check=check_data,
)
