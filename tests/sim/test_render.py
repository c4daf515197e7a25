"""The episode renderer: forecast modes keep their colour by mode index, dimmed by weight; a frame is large
enough to read, with the step's key numbers and a legend."""

from __future__ import annotations

import dataclasses

import numpy as np

from sim.config import RasterConfig
from sim.drawing import MODE_COLOURS
from sim.recording import StepSnapshot
from sim.render import _ego_px, draw_sensor

RASTER = RasterConfig(size=64, resolution=1.0)


def snapshot(forecasts: np.ndarray, weights: np.ndarray) -> StepSnapshot:
    return StepSnapshot(
        time=0.0, world_map=np.zeros((8, 8), np.uint8), origin=np.zeros(2), ego_pose=np.zeros(3),
        ego_corners=np.array([[2.3, 0.95], [2.3, -0.95], [-2.3, -0.95], [-2.3, 0.95]]),
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


def test_a_frame_is_readable_size_with_key_numbers_and_a_legend():
    from sim.drawing import KIND_COLOURS
    from sim.render import GAP_PX, HEADER_PX, LEGEND_PX, PANEL_PX, compose, key_numbers

    t = np.linspace(2.0, 20.0, 12)
    plan = np.stack((t, np.zeros_like(t)), axis=-1)
    candidates = np.stack((plan + [0.0, 3.0], plan, plan - [0.0, 3.0]))  # the plan follows candidate 2
    snap = dataclasses.replace(
        snapshot(np.zeros((0, 2, 12, 2)), np.zeros((0, 2))),
        plan=plan,
        speed=8.25,
        overlay={"candidates": candidates, "candidate_weights": np.array([0.2, 0.7, 0.1])},
    )
    frame = compose(snap, RASTER)
    assert frame.shape == (HEADER_PX + PANEL_PX + LEGEND_PX, 2 * PANEL_PX + GAP_PX, 3)
    assert PANEL_PX >= 640  # a person can read it (the panels were 256 px)
    legend = frame[-LEGEND_PX:].reshape(-1, 3)
    for colour in KIND_COLOURS:  # every agent kind has its swatch
        assert (legend == colour).all(-1).any()
    assert (frame[:HEADER_PX] > 200).all(-1).any()  # the header's text is drawn
    numbers = key_numbers(snap)
    assert "speed  8.2 m/s" in numbers and "candidate 2 of 3, weight 0.70" in numbers and "sigma" not in numbers
    richer = dataclasses.replace(snap, overlay={**snap.overlay, "sigma": np.array(1.5),
                                                "candidate_risk": np.array([3.0, 1.25, 9.0])})  # fmt: skip
    assert "sigma +1.50" in key_numbers(richer) and "risk 1.25" in key_numbers(richer)


def test_a_gif_keeps_every_other_step_at_twice_the_duration_and_an_mp4_every_step(tmp_path):
    import cv2
    from PIL import Image

    from sim.render import GIF_EVERY, write_video

    weights = np.zeros((0, 2))
    steps = [dataclasses.replace(snapshot(np.zeros((0, 2, 12, 2)), weights), time=0.1 * k) for k in range(6)]
    gif = write_video(steps, tmp_path / "e.gif", fps=10, raster=RASTER)
    with Image.open(gif) as frames:
        assert frames.n_frames == 6 // GIF_EVERY == 3 and frames.info["duration"] == 100 * GIF_EVERY
    video = cv2.VideoCapture(str(write_video(steps, tmp_path / "e.mp4", fps=10, raster=RASTER)))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    video.release()
