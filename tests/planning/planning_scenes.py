"""Small planning scenes: a straight road in front of the ego and hand-made forecasts."""

from __future__ import annotations

import dataclasses
import math

import torch

from prediction.types import Forecast
from sim.sensors import render_frame
from sim.types import SensorFrame
from tests.sim.sensor_worlds import sensor_world, straight_road

YAW = 0.3
CENTRE = (10.0, -5.0)
HORIZON = 12


def road_frame(ego_speed: float = 10.0, speed_limit: float = 15.0, road_width: float = 7.0) -> SensorFrame:
    """The ego on a straight 200 m road (its route), 30 m from the start."""
    world = sensor_world([[]], ego_centre=CENTRE, ego_yaw=YAW)
    start = (CENTRE[0] - 30 * math.cos(YAW), CENTRE[1] - 30 * math.sin(YAW))
    world = straight_road(world, start=start, heading=YAW, length=200.0, road_width=road_width, speed_limit=speed_limit)
    ego = dataclasses.replace(world.ego, speed=torch.full((1,), ego_speed), progress=torch.full((1,), 30.0))
    return render_frame(dataclasses.replace(world, ego=ego))


def forecast(
    paths: list[torch.Tensor],
    *,
    agents: int = 8,
    modes: int = 2,
    std: float = 0.3,
    existence: float | list[float] = 1.0,
    mode_weights: tuple[float, ...] | None = None,
) -> Forecast:
    """Vehicles following `paths` ([T, 2], or [K, T, 2] per mode), ego frame; other slots empty."""
    f = Forecast.empty(1, agents, modes, HORIZON)
    means, valid = f.means.clone(), f.valid.clone()
    weights = torch.tensor(mode_weights) if mode_weights else torch.full((modes,), 1.0 / modes)
    ex = torch.tensor(existence if isinstance(existence, list) else [existence] * len(paths))
    for i, path in enumerate(paths):
        means[0, i] = path if path.dim() == 3 else path.expand(modes, -1, -1)
        valid[0, i] = True
    chol = torch.eye(2).expand(1, agents, modes, HORIZON, 2, 2) * std
    existence_all = torch.zeros(1, agents)
    existence_all[0, : len(paths)] = ex
    class_probs = f.class_probs.clone()
    class_probs[0, : len(paths)] = torch.tensor([1.0, 0.0, 0.0])
    log_weights = weights.log().expand(1, agents, modes).clone()
    return Forecast(
        log_weights=log_weights,
        means=means,
        chol=chol.clone(),
        existence=existence_all,
        class_probs=class_probs,
        valid=valid,
    ).validate()


def standing(x: float, y: float) -> torch.Tensor:
    """[T, 2] an agent standing at (x, y)."""
    return torch.tensor([x, y]).expand(HORIZON, 2).clone()


def moving(x: float, y: float, vx: float, vy: float, dt: float = 0.4) -> torch.Tensor:
    """[T, 2] constant velocity from (x, y)."""
    t = (torch.arange(HORIZON) + 1.0) * dt
    return torch.stack((x + vx * t, y + vy * t), dim=-1)
