"""Draw recorded episodes with OpenCV and write them as MP4 or GIF.

A frame (`compose`) has a header with the step's key numbers (time, speed, the chosen candidate and its
weight; sigma and the candidate's risk where the policy's overlay carries them), two panels of `PANEL_PX`
pixels and a legend below them. Left panel: the world, north up, centred ahead of the ego (drivable area, agents by
class, the ego and its plan, a 10 m scale bar). Right panel: what the policy saw and planned, in the ego
frame facing up (sensor raster over the map raster, the objects it believed in with 1- and 2-sigma
covariance ellipses, the tracker's tracks, forecast modes, candidate plans coloured by risk, the chosen plan).

The palette and what is drawn of a policy's overlay (`sim.drawing`) are shared with the Foxglove
channels of a drive log (`sim.drivelogs.foxglove`), so the video and the log show the same things in the same
colours.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from core.io import atomic_path
from sim.config import RasterConfig
from sim.drawing import (
    BEV_COLOUR,
    CROSSWALK_COLOUR,
    DETECTION_COLOUR,
    DRIVABLE_COLOUR,
    EGO_COLOUR,
    KIND_COLOURS,
    KIND_NAMES,
    LANE_COLOUR,
    MIN_DRAWN_EXISTENCE,
    MIN_DRAWN_MODE_WEIGHT,
    MODE_COLOURS,
    PLAN_COLOUR,
    TRACK_COLOUR,
    bev_hits,
    candidate_colour,
    candidate_levels,
    map_image,
    mode_colour,
    plan_numbers,
)
from sim.recording import WORLD_VIEW_M, StepSnapshot
from sim.sensors.raster import ego_to_cell

PANEL_PX = 768  # side of each panel
# A GIF keeps every 2nd step (5 Hz at the 0.1 s sim step): at readable sizes a GIF frame is about 200 kB (a
# 120-step cut_in episode was 24 MB, 1.5 GB to encode, at every step); MP4 keeps every step.
GIF_EVERY = 2
HEADER_PX = 72  # the key numbers, then the panels' captions
LEGEND_PX = 92
GAP_PX = 8
BACKGROUND = (24, 24, 24)
TEXT_COLOUR = (235, 235, 235)
FONT = cv2.FONT_HERSHEY_SIMPLEX

# --- the world panel ---------------------------------------------------------------------------------


def _world_px(points: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """World points (m) to world-panel pixels (col, row), north up, `origin` at the centre."""
    scale = PANEL_PX / WORLD_VIEW_M
    col = (points[..., 0] - origin[0]) * scale + PANEL_PX / 2
    row = -(points[..., 1] - origin[1]) * scale + PANEL_PX / 2
    return np.stack((col, row), axis=-1)


def _ego_to_world(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Ego-frame points `[..., 2]` (m) to the world frame, `pose` = the ego frame's (x, y, yaw) in the world."""
    c, s = np.cos(pose[2]), np.sin(pose[2])
    x, y = points[..., 0], points[..., 1]
    return np.stack((pose[0] + c * x - s * y, pose[1] + s * x + c * y), axis=-1)


def _world_to_ego(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """World points `[..., 2]` (m) to the ego frame of `pose` (the inverse of `_ego_to_world`)."""
    c, s = np.cos(pose[2]), np.sin(pose[2])
    x, y = points[..., 0] - pose[0], points[..., 1] - pose[1]
    return np.stack((c * x + s * y, c * y - s * x), axis=-1)


def _box(img: np.ndarray, corners: np.ndarray, colour) -> None:
    """A filled box (corners front-left, front-right, rear-right, rear-left, in pixels) with a bright front."""
    pts = corners.round().astype(np.int32)
    cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
    front = tuple(min(255, c + 70) for c in colour)
    cv2.line(img, tuple(pts[0]), tuple(pts[1]), front, 2, cv2.LINE_AA)


def _scale_bar(img: np.ndarray, px_per_m: float) -> None:
    """A 10 m bar in the bottom-left corner."""
    h = img.shape[0]
    x0, y = 12, h - 14
    x1 = x0 + int(round(10 * px_per_m))
    cv2.line(img, (x0, y), (x1, y), TEXT_COLOUR, 2)
    cv2.putText(img, "10 m", (x0, y - 6), FONT, 0.5, TEXT_COLOUR, 1, cv2.LINE_AA)


def draw_world(snap: StepSnapshot) -> np.ndarray:
    """The world panel `[PANEL_PX, PANEL_PX, 3]`: ground truth, north up around the ego."""
    img = np.full((PANEL_PX, PANEL_PX, 3), 40, np.uint8)
    drivable = cv2.resize(snap.world_map, (PANEL_PX, PANEL_PX), interpolation=cv2.INTER_LINEAR)
    img[drivable > 127] = DRIVABLE_COLOUR
    for corners, kind, valid in zip(snap.agent_corners, snap.agent_kind, snap.agent_valid, strict=True):
        if valid:
            _box(img, _world_px(corners, snap.origin), KIND_COLOURS[int(kind)])
    _box(img, _world_px(snap.ego_corners, snap.origin), EGO_COLOUR)
    plan = _world_px(_ego_to_world(snap.plan, snap.ego_pose), snap.origin).round().astype(np.int32)
    cv2.polylines(img, [plan], False, PLAN_COLOUR, 2, cv2.LINE_AA)
    _scale_bar(img, PANEL_PX / WORLD_VIEW_M)
    return img


# --- the sensor panel --------------------------------------------------------------------------------


def sensor_scale(raster: RasterConfig) -> int:
    """Panel pixels per raster cell: the raster fills about `PANEL_PX`."""
    return max(1, round(PANEL_PX / raster.size))


def _ego_px(points: np.ndarray, raster: RasterConfig) -> np.ndarray:
    """Ego-frame points (x forward, y left, m) to sensor-panel pixels (col, row)."""
    row, col = ego_to_cell(points[..., 0], points[..., 1], raster)
    return np.stack((col, row), axis=-1) * sensor_scale(raster)


def _ellipse(img: np.ndarray, centre: np.ndarray, cov: np.ndarray, raster: RasterConfig, colour, k: float) -> None:
    """Draw the k-sigma ellipse of a 2x2 ego-frame covariance (m^2) around `centre` (ego frame, m)."""
    values, vectors = np.linalg.eigh(cov)
    axes = k * np.sqrt(np.clip(values, 1e-6, None)) / raster.resolution * sensor_scale(raster)
    # Ego (x fwd, y left) -> image (col right, row down): the angle of the major axis flips.
    angle = np.degrees(np.arctan2(-vectors[0, 1], -vectors[1, 1]))
    c = tuple(int(v) for v in _ego_px(centre, raster).round())
    cv2.ellipse(img, c, (max(1, int(axes[1])), max(1, int(axes[0]))), angle, 0, 360, colour, 1, cv2.LINE_AA)


def draw_sensor(snap: StepSnapshot, raster: RasterConfig) -> np.ndarray:
    """The sensor panel: what the policy saw and planned, ego frame facing up."""
    base = map_image(snap.map)
    base[bev_hits(snap.bev)] = BEV_COLOUR
    scale = sensor_scale(raster)
    img = cv2.resize(base, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    _draw_overlay(img, snap, raster)
    plan = _ego_px(snap.plan, raster).round().astype(np.int32)
    cv2.polylines(img, [plan], False, PLAN_COLOUR, 3, cv2.LINE_AA)
    ego = _ego_px(_world_to_ego(snap.ego_corners, snap.ego_pose), raster).round().astype(np.int32)
    cv2.polylines(img, [ego], True, EGO_COLOUR, 2, cv2.LINE_AA)
    _scale_bar(img, scale / raster.resolution)
    return img


def _draw_overlay(img: np.ndarray, snap: StepSnapshot, raster: RasterConfig) -> None:
    o = snap.overlay
    if "candidates" in o:
        levels = candidate_levels(o)
        for c in np.argsort(levels, kind="stable"):  # the best on top
            points = _ego_px(o["candidates"][c], raster).round().astype(np.int32)
            cv2.polylines(img, [points], False, candidate_colour(float(levels[c])), 1, cv2.LINE_AA)
    if "forecasts" in o:
        weights = o.get("forecast_weights", np.ones(o["forecasts"].shape[:2]))
        for agent, agent_w in zip(o["forecasts"], weights, strict=True):
            for k, (mode, w) in enumerate(zip(agent, agent_w, strict=True)):
                _forecast_mode(img, mode, float(w), k, raster)
    for prefix, base in (("objects", DETECTION_COLOUR), ("tracks", TRACK_COLOUR)):
        if f"{prefix}_xy" in o:
            _believed(img, o[f"{prefix}_xy"], o.get(f"{prefix}_cov"), o.get(f"{prefix}_prob"), base, raster)


def _believed(img: np.ndarray, xy: np.ndarray, covs: np.ndarray | None, probs: np.ndarray | None,
              base: tuple[int, int, int], raster: RasterConfig) -> None:  # fmt: skip
    """Objects (or tracks) `xy` [M, 2] m with 1- and 2-sigma ellipses of `covs` [M, 2, 2] (a circle without),
    dimmed by existence `probs` [M]; the unlikely (`MIN_DRAWN_EXISTENCE`) left out."""
    probs = np.ones(len(xy)) if probs is None else probs
    for m in np.flatnonzero(probs >= MIN_DRAWN_EXISTENCE):
        colour = tuple(int(c * (0.25 + 0.75 * float(probs[m]))) for c in base)
        if covs is not None:
            _ellipse(img, xy[m], covs[m], raster, colour, 1.0)
            _ellipse(img, xy[m], covs[m], raster, colour, 2.0)
        else:
            cv2.circle(img, tuple(_ego_px(xy[m], raster).round().astype(int)), 4, colour, 1, cv2.LINE_AA)


def _forecast_mode(img: np.ndarray, mode: np.ndarray, weight: float, k: int, raster: RasterConfig) -> None:
    """One forecast mode `[T, 2]`: coloured by its index (`mode_colour`; the predictor's mode k is one
    decoder head), dimmed and thinned by its weight, and labelled with the weight where it matters (>= 20 %)."""
    if weight <= MIN_DRAWN_MODE_WEIGHT:
        return
    colour = mode_colour(k, weight)
    points = _ego_px(mode, raster).round().astype(np.int32)
    cv2.polylines(img, [points], False, colour, 2 if weight >= 0.2 else 1, cv2.LINE_AA)
    if weight >= 0.2:
        end = tuple(int(v) for v in points[-1])
        cv2.putText(img, f"{weight:.2f}", end, FONT, 0.45, colour, 1, cv2.LINE_AA)


# --- header, legend, frame ---------------------------------------------------------------------------


def key_numbers(snap: StepSnapshot) -> str:
    """The header line: time, speed, and the plan's numbers (`sim.drawing.plan_numbers`)."""
    parts = [f"t {snap.time:5.1f} s", f"speed {snap.speed:4.1f} m/s", *plan_numbers(snap.overlay, snap.plan)]
    o = snap.overlay
    if "objects_prob" in o:
        parts.append(f"objects believed {float(np.sum(o['objects_prob'])):.1f} (sum of existence)")
    return "   |   ".join(parts)


def _swatch(img: np.ndarray, x: int, y: int, kind: str, colours: Sequence, label: str) -> int:
    """One legend entry at (x, y) (y: the text baseline); returns the x where the next one starts."""
    if kind == "box":
        cv2.rectangle(img, (x, y - 12), (x + 18, y + 2), colours[0], -1)
        x += 24
    elif kind == "line":
        for i, colour in enumerate(colours):
            cv2.line(img, (x + 10 * i, y - 5), (x + 10 * i + 18, y - 5), colour, 3, cv2.LINE_AA)
        x += 10 * (len(colours) - 1) + 24
    elif kind == "ellipse":
        cv2.ellipse(img, (x + 12, y - 5), (6, 4), 0, 0, 360, colours[0], 1, cv2.LINE_AA)
        cv2.ellipse(img, (x + 12, y - 5), (12, 8), 0, 0, 360, colours[0], 1, cv2.LINE_AA)
        x += 30
    cv2.putText(img, label, (x, y), FONT, 0.5, TEXT_COLOUR, 1, cv2.LINE_AA)
    (w, _), _ = cv2.getTextSize(label, FONT, 0.5, 1)
    return x + w + 22


def draw_legend(width: int) -> np.ndarray:
    """The legend strip `[LEGEND_PX, width, 3]`: world panel entries on the first row, sensor panel's on the
    second."""
    img = np.full((LEGEND_PX, width, 3), BACKGROUND, np.uint8)
    x, y = 12, 30
    for colour, name in zip(KIND_COLOURS, KIND_NAMES, strict=True):
        x = _swatch(img, x, y, "box", [colour], name)
    x = _swatch(img, x, y, "box", [EGO_COLOUR], "ego")
    x = _swatch(img, x, y, "line", [PLAN_COLOUR], "chosen plan")
    x = _swatch(img, x, y, "box", [DRIVABLE_COLOUR], "drivable")
    on_road = lambda colour: tuple(min(255, a + b) for a, b in zip(DRIVABLE_COLOUR, colour, strict=True))  # noqa: E731
    x = _swatch(img, x, y, "box", [on_road(LANE_COLOUR)], "lane")
    x = _swatch(img, x, y, "box", [on_road(CROSSWALK_COLOUR)], "crosswalk")
    x, y = 12, 70
    x = _swatch(img, x, y, "box", [BEV_COLOUR], "sensor return")
    x = _swatch(img, x, y, "ellipse", [DETECTION_COLOUR], "detection, 1/2 sigma (dim: unlikely)")
    x = _swatch(img, x, y, "ellipse", [TRACK_COLOUR], "track")
    x = _swatch(img, x, y, "line", [candidate_colour(v) for v in (0.0, 0.5, 1.0)], "candidates, risky > safe")
    _swatch(img, x, y, "line", list(MODE_COLOURS), "forecast modes 1-8 (dim: unlikely)")
    return img


def compose(snap: StepSnapshot, raster: RasterConfig) -> np.ndarray:
    """One video frame: header, world and sensor panels side by side, legend."""
    world, sensor = draw_world(snap), draw_sensor(snap, raster)
    h = max(world.shape[0], sensor.shape[0])
    pad = lambda im: cv2.copyMakeBorder(im, 0, h - im.shape[0], 0, 0, cv2.BORDER_CONSTANT, value=BACKGROUND)  # noqa: E731
    gap = np.full((h, GAP_PX, 3), BACKGROUND, np.uint8)
    panels = np.hstack((pad(world), gap, pad(sensor)))
    header = np.full((HEADER_PX, panels.shape[1], 3), BACKGROUND, np.uint8)
    cv2.putText(header, key_numbers(snap), (12, 28), FONT, 0.62, TEXT_COLOUR, 1, cv2.LINE_AA)
    for x, caption in (
        (12, "world (ground truth), north up"),
        (world.shape[1] + GAP_PX + 12, "what the policy saw and planned, ego frame facing up"),
    ):
        cv2.putText(header, caption, (x, 62), FONT, 0.55, (170, 170, 170), 1, cv2.LINE_AA)
    return np.vstack((header, panels, draw_legend(panels.shape[1])))


def write_video(
    snapshots: list[StepSnapshot], path: Path, fps: int = 10, raster: RasterConfig = RasterConfig()
) -> Path:
    """Write frames to `path` (.mp4 or .gif) atomically: a failed write leaves no partial file."""
    if not snapshots:
        raise ValueError(f"write_video: no frames recorded for {path}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"write_video: expected a .mp4 or .gif path, got {path}")
    every = GIF_EVERY if suffix == ".gif" else 1
    frames = [compose(s, raster) for s in snapshots[::every]]
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            anim = cv2.Animation()
            anim.frames = frames
            anim.durations = [int(1000 * every / fps)] * len(frames)
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
