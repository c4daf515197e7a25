"""ETH/UCY pedestrian tracks: parse, resample to the sim step, cut replay windows.

The text format has one row per (frame, agent): `frame_id agent_id x y`,
tab- or space-separated, metres, world frame. Frame ids advance by 10 per
0.4 s sample and may be written "780" or "780.0" (agent ids likewise).

    tracks = load_tracks("biwi_eth.txt")
    grid = resample(tracks, dt=0.1)
    window = cut_window(grid, start_step=400, steps=201, max_agents=24)

Headings and speeds come from BACKWARD differences only, so nothing in a
window is computed from the future (see STYLE.md on Trajectron's central
differences). A track's first resampled point has no past; it is dropped from
the replay (the pedestrian appears one step later, with a heading).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FRAME_STEP = 10  # frame ids per sample
SAMPLE_DT = 0.4  # s per sample (2.5 Hz)
_MAX_GAP = 1.5  # samples: a longer hole in a track is not interpolated across
_STILL = 1e-3  # m per step below which a pedestrian keeps its previous heading


class TrackFormatError(ValueError):
    """An ETH/UCY file is malformed; the message names the file and line."""


@dataclass(frozen=True)
class RawTracks:
    """Raw tracks, one entry per agent, each sorted by time.

    Attributes:
        source: the file.
        agent_ids: agent id of each track.
        times: per track `(K,)` float, s (frame_id / FRAME_STEP * SAMPLE_DT).
        xy: per track `(K, 2)` float, m, world frame.
        sample_dt: the recording's sample period, s.
    """

    source: str
    agent_ids: tuple[int, ...]
    times: tuple[np.ndarray, ...]
    xy: tuple[np.ndarray, ...]
    sample_dt: float = SAMPLE_DT


@dataclass(frozen=True)
class GridTracks:
    """Tracks on a common time grid `t_k = (start_step + k) * dt`.

    Attributes:
        agent_ids: `(A,)` int.
        xy: `(A, T, 2)` float, m (0 where invalid).
        valid: `(A, T)` bool, inside the track (never extrapolated).
        yaw: `(A, T)` float, heading from the backward difference, rad (held while still).
        speed: `(A, T)` float, backward-difference speed, m/s.
        has_past: `(A, T)` bool, valid now and one step ago (yaw and speed are defined).
    """

    dt: float
    start_step: int
    agent_ids: np.ndarray
    xy: np.ndarray
    valid: np.ndarray
    yaw: np.ndarray
    speed: np.ndarray
    has_past: np.ndarray

    @property
    def steps(self) -> int:
        return int(self.valid.shape[1])


@dataclass(frozen=True)
class ReplayWindow:
    """At most N agents over TL steps, ready for REPLAY logs (present = `valid`)."""

    agent_ids: np.ndarray  # (N,)
    xy: np.ndarray  # (N, TL, 2)
    yaw: np.ndarray  # (N, TL)
    speed: np.ndarray  # (N, TL)
    valid: np.ndarray  # (N, TL)


def _number(text: str, what: str, where: str, whole: bool) -> float:
    """The value of one column. Errors name the line and column, never the text: the file may not be an
    ETH/UCY file at all (a scenario's `crowd.data` pointed at a secret), and its content must not leak."""
    try:
        value = float(text)
    except ValueError:
        raise TrackFormatError(f"{where}: {what} is not a number") from None
    if not math.isfinite(value):
        raise TrackFormatError(f"{where}: {what} is not finite")
    if whole and value != round(value):
        raise TrackFormatError(f"{where}: {what} is not a whole number")
    return value


def _lines(f, path: Path):
    """The file's lines; a file that is not text is a `TrackFormatError` naming it (not a codec error)."""
    try:
        yield from f
    except UnicodeDecodeError:
        raise TrackFormatError(f"{path}: not a UTF-8 text file") from None


def load_tracks(path: str | Path) -> RawTracks:
    """Parse an ETH/UCY text file. Blank lines and lines starting with '#' are skipped."""
    path = Path(path)
    rows: dict[int, list[tuple[float, float, float]]] = {}
    seen: set[tuple[int, int]] = set()
    with path.open(encoding="utf-8", errors="strict") as f:
        for number, line in enumerate(_lines(f, path), start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            where = f"{path}:{number}"
            cols = text.split()
            if len(cols) != 4:
                raise TrackFormatError(f"{where}: expected 4 columns 'frame_id agent_id x y', got {len(cols)}")
            frame = int(_number(cols[0], "frame id (column 1)", where, whole=True))
            agent = int(_number(cols[1], "agent id (column 2)", where, whole=True))
            x = _number(cols[2], "x (column 3)", where, whole=False)
            y = _number(cols[3], "y (column 4)", where, whole=False)
            if (frame, agent) in seen:
                raise TrackFormatError(f"{where}: an agent id appears twice in one frame")
            seen.add((frame, agent))
            rows.setdefault(agent, []).append((frame / FRAME_STEP * SAMPLE_DT, x, y))
    if not rows:
        raise TrackFormatError(f"{path}: no tracks found")
    ids = sorted(rows)
    arrays = [np.array(sorted(rows[a]), dtype=np.float64) for a in ids]
    return RawTracks(str(path), tuple(ids), tuple(a[:, 0] for a in arrays), tuple(a[:, 1:] for a in arrays))


def _in_steps(t: np.ndarray, dt: float) -> np.ndarray:
    """Times in units of `dt`, snapped to integers where they are within rounding error of one,
    so grid points on original samples interpolate to exactly the original values."""
    steps = t / dt
    near = np.round(steps)
    return np.where(np.abs(steps - near) < 1e-6, near, steps)


def resample(tracks: RawTracks, dt: float) -> GridTracks:
    """Linear interpolation of every track onto the grid of multiples of `dt`.

    A grid point is valid only between a track's first and last sample and not
    inside a hole longer than 1.5 samples: nothing is extrapolated.
    """
    if dt <= 0:
        raise ValueError(f"resample: dt must be > 0, got {dt}")
    positions = [_in_steps(t, dt) for t in tracks.times]
    start = int(math.ceil(min(p[0] for p in positions)))
    stop = int(math.floor(max(p[-1] for p in positions)))
    k = np.arange(start, stop + 1, dtype=np.float64)  # (T,)
    A, T = len(positions), len(k)
    xy, valid = np.zeros((A, T, 2)), np.zeros((A, T), bool)
    max_gap = _MAX_GAP * tracks.sample_dt / dt
    for a, (p, pts) in enumerate(zip(positions, tracks.xy, strict=True)):
        inside = (k >= p[0]) & (k <= p[-1])
        seg = np.clip(np.searchsorted(p, k, side="right") - 1, 0, max(len(p) - 2, 0))
        hole = np.zeros(T, bool)
        if len(p) > 1:  # strictly inside a segment longer than max_gap
            hole = (np.diff(p)[seg] > max_gap) & (k > p[seg]) & (k < p[seg + 1])
        valid[a] = inside & ~hole
        for c in range(2):
            xy[a, :, c] = np.where(valid[a], np.interp(k, p, pts[:, c]), 0.0)
    yaw, speed, has_past = _backward_motion(xy, valid, dt)
    return GridTracks(dt, start, np.array(tracks.agent_ids), xy, valid, yaw, speed, has_past)


def _backward_motion(xy: np.ndarray, valid: np.ndarray, dt: float) -> tuple[np.ndarray, ...]:
    """Heading and speed `(A, T)` from x_t - x_{t-1}; the heading is held while still."""
    step = np.zeros_like(xy)
    step[:, 1:] = xy[:, 1:] - xy[:, :-1]
    has_past = valid.copy()
    has_past[:, 0] = False
    has_past[:, 1:] &= valid[:, :-1]
    dist = np.linalg.norm(step, axis=-1)
    moving = has_past & (dist > _STILL)
    raw = np.arctan2(step[..., 1], step[..., 0])
    # Forward-fill the last moving heading (0 before a pedestrian first moves).
    T = xy.shape[1]
    last = np.where(moving, np.arange(T), -1)
    last = np.maximum.accumulate(last, axis=1)
    yaw = np.where(last >= 0, np.take_along_axis(raw, np.clip(last, 0, None), axis=1), 0.0)
    speed = np.where(has_past, dist / dt, 0.0)
    return yaw, speed, has_past


def cut_window(grid: GridTracks, start_step: int, steps: int, max_agents: int) -> ReplayWindow:
    """Grid steps `start_step .. start_step + steps - 1` (relative to the grid) for at most
    `max_agents` agents: those present first (by first present step, then id).

    Present means the agent has a past step (so its heading is known); steps past
    the grid's end are absent.
    """
    if max_agents < 1 or steps < 1:
        raise ValueError(f"cut_window: need max_agents >= 1 and steps >= 1, got {max_agents}, {steps}")
    lo, hi = max(0, start_step), min(grid.steps, start_step + steps)
    present = np.zeros((len(grid.agent_ids), steps), bool)
    present[:, lo - start_step : hi - start_step] = grid.has_past[:, lo:hi]
    first = np.where(present.any(1), present.argmax(1), steps)
    order = np.lexsort((grid.agent_ids, first))
    chosen = order[present[order].any(1)][:max_agents]

    def window(field: np.ndarray) -> np.ndarray:
        out = np.zeros((len(chosen), steps, *field.shape[2:]))
        out[:, lo - start_step : hi - start_step] = field[chosen, lo:hi]
        return out

    valid = present[chosen]
    return ReplayWindow(
        agent_ids=grid.agent_ids[chosen],
        xy=window(grid.xy) * valid[..., None],
        yaw=window(grid.yaw) * valid,
        speed=window(grid.speed) * valid,
        valid=valid,
    )
