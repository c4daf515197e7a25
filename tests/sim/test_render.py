"""The episode renderer's sensor panel: forecast modes keep their colour by mode index, dimmed by weight."""

from __future__ import annotations

import numpy as np

from sim.config import RasterConfig
from sim.recording import StepSnapshot
from sim.render import MODE_COLOURS, _ego_px, draw_sensor

RASTER = RasterConfig(size=64, resolution=1.0)


def snapshot(forecasts: np.ndarray, weights: np.ndarray) -> StepSnapshot:
    return StepSnapshot(
        time=0.0, world_map=np.zeros((8, 8), np.uint8), origin=np.zeros(2), ego_corners=np.zeros((4, 2)),
        agent_corners=np.zeros((0, 4, 2)), agent_kind=np.zeros(0, int), agent_valid=np.zeros(0, bool),
        bev=np.zeros((2, RASTER.size, RASTER.size), np.float32),
        map=np.zeros((3, RASTER.size, RASTER.size), np.float32),
        plan=np.zeros((2, 2)), overlay={"forecasts": forecasts, "forecast_weights": weights}, speed=0.0,
    )  # fmt: skip


def colour_at(img: np.ndarray, point: tuple[float, float]) -> np.ndarray:
    col, row = _ego_px(np.array(point), RASTER).round().astype(int)
    return img[row, col].astype(int)


def test_each_mode_is_drawn_in_its_own_colour_brighter_when_heavier():
    # One agent, two straight modes: mode 0 ahead-left, mode 1 ahead-right (ego frame: x forward, y left).
    t = np.linspace(2.0, 20.0, 12)
    left = np.stack((t, np.full_like(t, 8.0)), axis=-1)
    right = np.stack((t, np.full_like(t, -8.0)), axis=-1)
    forecasts = np.stack((left, right))[None]
    heavy = draw_sensor(snapshot(forecasts, np.array([[0.7, 0.3]])), RASTER)
    light = draw_sensor(snapshot(forecasts, np.array([[0.3, 0.7]])), RASTER)
    a, b = colour_at(heavy, (10.0, 8.0)), colour_at(heavy, (10.0, -8.0))
    # Hue from the mode's index: the channel ordering of its palette colour survives dimming.
    assert np.argmax(a) == np.argmax(MODE_COLOURS[0]) and np.argmax(b) == np.argmax(MODE_COLOURS[1])
    assert a.sum() > colour_at(light, (10.0, 8.0)).sum()  # heavier is brighter
