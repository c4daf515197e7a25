"""Draw recorded episodes with OpenCV and write them as MP4 or GIF.

Left panel: the world, north up around the ego (drivable area, agents by class,
the ego). Right panel: what the policy saw and planned, in the ego frame facing
up (sensor raster over the map raster, the objects it believed in with 1- and
2-sigma covariance ellipses, forecast modes, candidate plans, the chosen plan).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from core.io import atomic_path
from sim.config import RasterConfig
from sim.recording import WORLD_VIEW_M, WORLD_VIEW_PX, StepSnapshot
from sim.sensors.raster import ego_to_cell

# BGR colours by AgentKind: vehicle, pedestrian, cyclist.
KIND_COLOURS = ((235, 160, 60), (60, 60, 235), (60, 200, 60))
EGO_COLOUR = (0, 200, 255)
PLAN_COLOUR = (0, 255, 255)
SENSOR_SCALE = 2
# BGR colours of forecast modes by mode index (magenta, orange, green, violet, yellow, cyan, pink, white).
MODE_COLOURS = ((255, 0, 255), (0, 140, 255), (80, 220, 80), (255, 90, 140), (0, 230, 230), (255, 220, 0),
                (170, 120, 255), (230, 230, 230))  # fmt: skip


def _world_px(points: np.ndarray, origin: np.ndarray) -> np.ndarray:
    scale = WORLD_VIEW_PX / WORLD_VIEW_M
    col = (points[..., 0] - origin[0]) * scale + WORLD_VIEW_PX / 2
    row = -(points[..., 1] - origin[1]) * scale + WORLD_VIEW_PX / 2
    return np.stack((col, row), axis=-1)


def _ego_px(points: np.ndarray, raster: RasterConfig) -> np.ndarray:
    """Ego-frame points (x forward, y left) to sensor-panel pixels (col, row)."""
    row, col = ego_to_cell(points[..., 0], points[..., 1], raster)
    return np.stack((col, row), axis=-1) * SENSOR_SCALE


def draw_world(snap: StepSnapshot) -> np.ndarray:
    img = np.full((WORLD_VIEW_PX, WORLD_VIEW_PX, 3), 40, np.uint8)
    img[snap.world_map > 127] = (90, 90, 90)
    for corners, kind, valid in zip(snap.agent_corners, snap.agent_kind, snap.agent_valid, strict=True):
        if valid:
            pts = _world_px(corners, snap.origin).round().astype(np.int32)
            cv2.fillPoly(img, [pts], KIND_COLOURS[int(kind)])
    ego = _world_px(snap.ego_corners, snap.origin).round().astype(np.int32)
    cv2.fillPoly(img, [ego], EGO_COLOUR)
    cv2.putText(
        img,
        f"t={snap.time:5.1f}s v={snap.speed:4.1f}m/s",
        (6, 16),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    return img


def _ellipse(img: np.ndarray, centre: np.ndarray, cov: np.ndarray, raster: RasterConfig, colour, k: float) -> None:
    """Draw the k-sigma ellipse of a 2x2 ego-frame covariance."""
    values, vectors = np.linalg.eigh(cov)
    axes = k * np.sqrt(np.clip(values, 1e-6, None)) / raster.resolution * SENSOR_SCALE
    # Ego (x fwd, y left) -> image (col right, row down): the angle of the major axis flips.
    angle = np.degrees(np.arctan2(-vectors[0, 1], -vectors[1, 1]))
    c = tuple(int(v) for v in _ego_px(centre, raster).round())
    cv2.ellipse(img, c, (max(1, int(axes[1])), max(1, int(axes[0]))), angle, 0, 360, colour, 1, cv2.LINE_AA)


def draw_sensor(snap: StepSnapshot, raster: RasterConfig) -> np.ndarray:
    drivable, lanes, crosswalks = snap.map
    base = np.zeros(drivable.shape + (3,), np.float32)
    base += drivable[..., None] * 60
    base[..., 1] += lanes * 80
    base[..., 2] += crosswalks * 80
    hit = snap.bev[0] > 0.5
    base[hit] = (255, 255, 255)
    img = cv2.resize(
        base.clip(0, 255).astype(np.uint8), None, fx=SENSOR_SCALE, fy=SENSOR_SCALE, interpolation=cv2.INTER_NEAREST
    )
    _draw_overlay(img, snap, raster)
    plan = _ego_px(snap.plan, raster).round().astype(np.int32)
    cv2.polylines(img, [plan], False, PLAN_COLOUR, 2, cv2.LINE_AA)
    ego = _ego_px(np.zeros(2), raster).round().astype(int)
    cv2.circle(img, tuple(ego), 3, EGO_COLOUR, -1)
    return img


def _draw_overlay(img: np.ndarray, snap: StepSnapshot, raster: RasterConfig) -> None:
    o = snap.overlay
    if "candidates" in o:
        weights = o.get("candidate_weights", np.ones(o["candidates"].shape[0]))
        for traj, w in zip(o["candidates"], weights, strict=True):
            shade = int(60 + 150 * float(np.clip(w, 0, 1)))
            cv2.polylines(img, [_ego_px(traj, raster).round().astype(np.int32)], False, (shade, shade, 0), 1)
    if "forecasts" in o:
        weights = o.get("forecast_weights", np.ones(o["forecasts"].shape[:2]))
        for agent, agent_w in zip(o["forecasts"], weights, strict=True):
            for k, (mode, w) in enumerate(zip(agent, agent_w, strict=True)):
                _forecast_mode(img, mode, float(w), k, raster)
    if "objects_xy" in o:
        probs = o.get("objects_prob", np.ones(o["objects_xy"].shape[0]))
        covs = o.get("objects_cov")
        for m, (xy, p) in enumerate(zip(o["objects_xy"], probs, strict=True)):
            if p < 0.05:
                continue
            colour = (0, int(255 * p), 255)
            if covs is not None:
                _ellipse(img, xy, covs[m], raster, colour, 1.0)
                _ellipse(img, xy, covs[m], raster, colour, 2.0)
            else:
                cv2.circle(img, tuple(_ego_px(xy, raster).round().astype(int)), 3, colour, 1)


def _forecast_mode(img: np.ndarray, mode: np.ndarray, weight: float, k: int, raster: RasterConfig) -> None:
    """One forecast mode `[T, 2]`: coloured by its index, so mode k keeps its colour from frame to frame
    (the predictor's mode k is one decoder head), dimmed and thinned by its weight, and labelled with
    the weight where it matters (>= 20 %)."""
    if weight <= 0.02:
        return
    colour = tuple(int(c * (0.35 + 0.65 * weight)) for c in MODE_COLOURS[k % len(MODE_COLOURS)])
    points = _ego_px(mode, raster).round().astype(np.int32)
    cv2.polylines(img, [points], False, colour, 2 if weight >= 0.2 else 1, cv2.LINE_AA)
    if weight >= 0.2:
        end = tuple(int(v) for v in points[-1])
        cv2.putText(img, f"{weight:.2f}", end, cv2.FONT_HERSHEY_PLAIN, 0.7, colour, 1, cv2.LINE_AA)


def compose(snap: StepSnapshot, raster: RasterConfig) -> np.ndarray:
    world = draw_world(snap)
    sensor = draw_sensor(snap, raster)
    h = max(world.shape[0], sensor.shape[0])
    pad = lambda im: cv2.copyMakeBorder(im, 0, h - im.shape[0], 0, 4, cv2.BORDER_CONSTANT, value=(0, 0, 0))  # noqa: E731
    return np.hstack((pad(world), pad(sensor)))


def write_video(
    snapshots: list[StepSnapshot], path: Path, fps: int = 10, raster: RasterConfig = RasterConfig()
) -> Path:
    """Write frames to `path` (.mp4 or .gif) atomically: a failed write leaves no partial file."""
    if not snapshots:
        raise ValueError(f"write_video: no frames recorded for {path}")
    path = Path(path)
    frames = [compose(s, raster) for s in snapshots]
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"write_video: expected a .mp4 or .gif path, got {path}")
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            anim = cv2.Animation()
            anim.frames = frames
            anim.durations = [int(1000 / fps)] * len(frames)
            ok = cv2.imwriteanimation(str(tmp), anim)
        else:
            h, w = frames[0].shape[:2]
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
            ok = writer.isOpened()
            for f in frames:
                writer.write(f)
            writer.release()
        if not ok:
            raise RuntimeError(f"OpenCV could not write {path}")
    return path
