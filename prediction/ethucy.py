"""ETH/UCY benchmark adapter: text files -> `TrajectoryWindows`, one window per current frame.

The data are the leave-one-scene-out folds of Social-GAN / Trajectron++:
`<root>/<scene>/{train,val,test}/*.txt`, rows `frame_id agent_id x y` (metres,
world frame), frame ids advancing by 10 per 0.4 s step, every track contiguous.

    split = load_split(root, "zara1", "test")
    split.windows            # TrajectoryWindows, S windows
    split.window_counts()    # {"crowds_zara01.txt": 883}

Windowing. Each file is put on its own regular frame grid (first frame .. last
frame in steps of 10). A window is centred on a current grid frame `f` and
spans `f - (history - 1) .. f + horizon`; it must lie entirely inside the grid,
so an agent that the protocol scores (present at all `history + horizon`
steps, `TrajectoryWindows.scored`) is never lost, only partially observed
agents near the file's ends are. Frames at which nobody is present give no
window. Unlike Social-GAN's loader, which steps through the *distinct* frame
ids of a file and so joins the two sides of an empty stretch into one
sequence, the grid keeps real time (as Trajectron++ does).

Positions only. This module hands out positions in the world frame; any
velocity a model uses must be computed from the observed steps alone
(backward differences), never from `future()` -- see STYLE.md on Trajectron++.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prediction.windows import HISTORY, HORIZON, SAMPLE_DT, TrajectoryWindows, no_lanes
from sim.ethucy import FRAME_STEP, RawTracks, TrackFormatError, load_tracks
from sim.state import NUM_CLASSES, AgentKind

SCENES = ("eth", "hotel", "univ", "zara1", "zara2")
SPLITS = ("train", "val", "test")
PEDESTRIAN_SIZE = 0.5  # m, box length and width given to every pedestrian
_EMPTY_SLOT_SIZE = 1.0  # m, filler for unused slots (as TrajectoryWindows.pad_agents)

__all__ = [
    "SCENES",
    "SPLITS",
    "SplitWindows",
    "TrackFormatError",
    "fold_files",
    "load_split",
    "scene_windows",
]


@dataclass(frozen=True)
class FrameGrid:
    """One file's tracks on its regular frame grid.

    Attributes:
        source: the file.
        first_frame: frame id of grid step 0.
        agent_ids: (N,) int, sorted ascending; column n of `xy` / `present`.
        xy: (F, N, 2) float64, m, world frame (0 where not present).
        present: (F, N) bool, agent n observed at grid step f.
    """

    source: str
    first_frame: int
    agent_ids: np.ndarray
    xy: np.ndarray
    present: np.ndarray

    @property
    def frames(self) -> int:
        return int(self.present.shape[0])

    def frame_id(self, step: int) -> int:
        return self.first_frame + step * FRAME_STEP


@dataclass(frozen=True)
class SplitWindows:
    """The windows of every file of one fold, with where each came from.

    Attributes:
        windows: S windows (agent slots padded to the widest file).
        files: names of the files, in load order.
        file_index: (S,) int64, index into `files` of each window's file.
        current_frame: (S,) int64, frame id of each window's current step.
    """

    windows: TrajectoryWindows
    files: tuple[str, ...]
    file_index: torch.Tensor
    current_frame: torch.Tensor

    def window_counts(self) -> dict[str, int]:
        """Windows per file name."""
        counts = torch.bincount(self.file_index, minlength=len(self.files))
        return {name: int(c) for name, c in zip(self.files, counts, strict=True)}


# -- files ---------------------------------------------------------------
def fold_files(root: str | Path, scene: str, split: str) -> list[Path]:
    """The `*.txt` files of `<root>/<scene>/<split>`, sorted by name.

    Raises:
        ValueError: `scene` not in SCENES or `split` not in SPLITS.
        FileNotFoundError: the root or fold folder is missing, or holds no `.txt` file.
    """
    if scene not in SCENES:
        raise ValueError(f"fold_files: scene must be one of {SCENES}, got {scene!r}")
    if split not in SPLITS:
        raise ValueError(f"fold_files: split must be one of {SPLITS}, got {split!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"fold_files: ETH/UCY root {root} is not a directory")
    folder = root / scene / split
    if not folder.is_dir():
        raise FileNotFoundError(f"fold_files: expected the folder {folder} (<root>/<scene>/<split>)")
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"fold_files: no .txt files in {folder}")
    return files


def _frame_ids(tracks: RawTracks, track: int) -> np.ndarray:
    """(K,) int64 frame ids of one track (load_tracks stores times in s; invert exactly)."""
    return np.rint(tracks.times[track] / tracks.sample_dt * FRAME_STEP).astype(np.int64)


def _check_contiguous(source: str, agent: int, frames: np.ndarray, first_frame: int) -> None:
    """Raise TrackFormatError unless the track's frames are on the grid and 10 apart."""
    off_grid = (frames - first_frame) % FRAME_STEP != 0
    if off_grid.any():
        frame = int(frames[np.argmax(off_grid)])
        raise TrackFormatError(
            f"{source}: agent {agent} has frame id {frame}, not a multiple of {FRAME_STEP} "
            f"from the file's first frame {first_frame}"
        )
    gaps = np.flatnonzero(np.diff(frames) != FRAME_STEP)
    if gaps.size:
        a, b = int(frames[gaps[0]]), int(frames[gaps[0] + 1])
        raise TrackFormatError(
            f"{source}: agent {agent} jumps from frame {a} to frame {b}; "
            f"expected contiguous tracks (consecutive frames {FRAME_STEP} apart)"
        )


def load_grid(path: str | Path) -> FrameGrid:
    """Parse one file (file:line errors from `sim.ethucy.load_tracks`) and check every
    track is contiguous on the file's frame grid.

    Raises:
        TrackFormatError: wrong column count, non-numeric or non-finite field, an agent
            twice in a frame, an empty file (all naming file and line), or a track with
            a frame gap or an off-grid frame id (naming file, agent and frame ids).
    """
    tracks = load_tracks(path)
    frames = [_frame_ids(tracks, i) for i in range(len(tracks.agent_ids))]
    first = min(int(f[0]) for f in frames)
    for agent, f in zip(tracks.agent_ids, frames, strict=True):
        _check_contiguous(tracks.source, agent, f, first)
    last = max(int(f[-1]) for f in frames)
    F, N = (last - first) // FRAME_STEP + 1, len(frames)
    # One scatter for all rows: (grid step, agent column) of every row of the file.
    steps = np.concatenate([(f - first) // FRAME_STEP for f in frames])
    cols = np.repeat(np.arange(N), [len(f) for f in frames])
    xy = np.zeros((F, N, 2))
    present = np.zeros((F, N), dtype=bool)
    xy[steps, cols] = np.concatenate(tracks.xy)
    present[steps, cols] = True
    return FrameGrid(tracks.source, first, np.asarray(tracks.agent_ids, dtype=np.int64), xy, present)


# -- windows -------------------------------------------------------------
def _current_steps(grid: FrameGrid, history: int, horizon: int, stride: int) -> np.ndarray:
    """(W,) grid steps usable as "now": the window fits the grid and someone is present."""
    candidates = np.arange(history - 1, grid.frames - horizon, stride)
    return candidates[grid.present[candidates].any(axis=1)]


def _check_capacity(grid: FrameGrid, current: np.ndarray, counts: np.ndarray, max_agents: int | None) -> None:
    if max_agents is None or counts.size == 0 or counts.max() <= max_agents:
        return
    worst = int(np.argmax(counts > max_agents))
    raise ValueError(
        f"{grid.source}: window at frame {grid.frame_id(int(current[worst]))} has {int(counts[worst])} agents "
        f"present at the current step, more than max_agents={max_agents}"
    )


def grid_windows(
    grid: FrameGrid, history: int, horizon: int, stride: int, max_agents: int | None
) -> tuple[TrajectoryWindows, np.ndarray]:
    """Cut every window of one file: (windows, (W,) int64 current frame ids).

    Vectorised over (window, agent) pairs: only the agents present at each
    current step are gathered, P pairs of L steps, never a [W, L, N] block.
    """
    current = _current_steps(grid, history, horizon, stride)  # (W,)
    now = grid.present[current]  # (W, N)
    counts = now.sum(axis=1)  # (W,)
    _check_capacity(grid, current, counts, max_agents)
    W, A, L = len(current), int(counts.max(initial=0)), history + horizon
    # Slots in agent-id order: columns are sorted by id, so a running count gives the slot.
    slot = np.cumsum(now, axis=1) - 1  # (W, N)
    win, col = np.nonzero(now)  # (P,), (P,), row-major: ordered by window, then id
    steps = current[win, None] + np.arange(-(history - 1), horizon + 1)  # (P, L)
    xy = np.zeros((W, A, L, 2), dtype=np.float32)
    present = np.zeros((W, A, L), dtype=bool)
    xy[win, slot[win, col]] = grid.xy[steps, col[:, None]]
    present[win, slot[win, col]] = grid.present[steps, col[:, None]]
    valid = np.arange(A) < counts[:, None]  # (W, A)
    windows = _windows(xy, present, valid, history)
    return windows, current * FRAME_STEP + grid.first_frame


def _windows(xy: np.ndarray, present: np.ndarray, valid: np.ndarray, history: int) -> TrajectoryWindows:
    """Pedestrian windows from numpy arrays; empty slots get the `pad_agents` filler."""
    W, A = valid.shape
    valid_t = torch.from_numpy(valid)
    pedestrian = torch.zeros(NUM_CLASSES)
    pedestrian[AgentKind.PEDESTRIAN] = 1.0
    uniform = torch.full((NUM_CLASSES,), 1.0 / NUM_CLASSES)
    class_probs = torch.where(valid_t[..., None], pedestrian, uniform)
    size = torch.where(valid_t[..., None], PEDESTRIAN_SIZE, _EMPTY_SLOT_SIZE).expand(W, A, 2)
    return TrajectoryWindows(
        xy=torch.from_numpy(xy),
        present=torch.from_numpy(present),
        class_probs=class_probs.float(),
        size=size.float().contiguous(),
        valid=valid_t,
        **no_lanes(W),
        history=history,
        dt=SAMPLE_DT,
    )


def _check_window_args(history: int, horizon: int, stride: int, max_agents: int | None) -> None:
    if history < 2 or horizon < 1 or stride < 1:
        raise ValueError(
            f"scene_windows: expected history >= 2, horizon >= 1, stride >= 1, got {history}, {horizon}, {stride}"
        )
    if max_agents is not None and max_agents < 1:
        raise ValueError(f"scene_windows: max_agents must be >= 1 or None, got {max_agents}")


def scene_windows(
    path: str | Path,
    history: int = HISTORY,
    horizon: int = HORIZON,
    stride: int = 1,
    max_agents: int | None = None,
) -> TrajectoryWindows:
    """All windows of one ETH/UCY file.

    Args:
        path: the text file.
        history, horizon: observed and predicted steps (0.4 s each).
        stride: grid steps between consecutive current frames.
        max_agents: raise if a window has more agents present at its current
            step (the error names the file and frame); None: no limit.

    Returns:
        W windows of A slots (A = most agents present at any current step):
        `xy` [W, A, L, 2] float32 m world frame as written in the file,
        `present` where the agent was observed, `valid` for the agents present
        at the current step, in agent-id order; pedestrians of 0.5 x 0.5 m.
        A file too short for one window gives W = 0.
    """
    _check_window_args(history, horizon, stride, max_agents)
    windows, _ = grid_windows(load_grid(path), history, horizon, stride, max_agents)
    return windows


def load_split(
    root: str | Path,
    scene: str,
    split: str,
    history: int = HISTORY,
    horizon: int = HORIZON,
    stride: int = 1,
    max_agents: int | None = None,
) -> SplitWindows:
    """The windows of every file of `<root>/<scene>/<split>`, concatenated in file-name order.

    Raises:
        ValueError: the fold holds no window at all (every file shorter than one window).
    """
    _check_window_args(history, horizon, stride, max_agents)
    parts, names, file_index, frames = [], [], [], []
    for i, path in enumerate(fold_files(root, scene, split)):
        windows, current = grid_windows(load_grid(path), history, horizon, stride, max_agents)
        parts.append(windows)
        names.append(path.name)
        file_index.append(torch.full((len(current),), i, dtype=torch.int64))
        frames.append(torch.from_numpy(current))
    file_index_t = torch.cat(file_index)
    if file_index_t.numel() == 0:
        raise ValueError(f"load_split: no window of {history + horizon} steps in any file of {scene}/{split}")
    return SplitWindows(TrajectoryWindows.concat(parts), tuple(names), file_index_t, torch.cat(frames))
