"""The log folder of a federated job: split by drive as `fleet train` splits it, every drive's windows read once.

A drive too short for one prediction window stays in its split and gives no windows (as in `fleet train`). A
drive whose log is damaged past what the index checks (frames that are not consecutive sim steps, messages
missing or misaligned, agent slots that change) is reported and skipped like a log the index cannot read: listed
in `LogSplit.broken`, and in neither the training nor the validation drives.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prediction.logwindows import log_windows
from prediction.simdata import TIMING
from prediction.windows import HISTORY, HORIZON, TrajectoryWindows
from sim.drivelogs.format import LogError
from sim.drivelogs.index import DriveEntry, LogIndex, build_index, split_drives

log = logging.getLogger(__name__)


@dataclass
class LogSplit:
    """A log folder split by drive, every drive's prediction windows read once (runs on one folder share it)."""

    index: LogIndex
    val_fraction: float
    train: list[DriveEntry]
    validation: list[DriveEntry]
    windows: dict[str, TrajectoryWindows]  # by drive name; a drive too short for one window is absent
    broken: dict[str, str]  # log file name: error; the index's broken logs and the drives damaged past it

    def windows_of(self, drives: Sequence[DriveEntry]) -> TrajectoryWindows:
        """The windows of `drives`, in their order, agent slots padded to the widest and trimmed."""
        parts = [self.windows[d.drive] for d in drives if d.drive in self.windows]
        if not parts:
            raise LogError(f"log folder {self.index.root}: none of {[d.drive for d in drives]} is long enough "
                           "for one prediction window")  # fmt: skip
        return TrajectoryWindows.concat(parts).trimmed()


def holds_window(entry: DriveEntry) -> bool:
    """Whether the drive is long enough for one prediction window (as `log_windows` samples it: every
    `sim_steps_per_sample`-th frame from frame 0)."""
    samples = -(-entry.frames // TIMING.sim_steps_per_sample)
    return samples >= HISTORY + HORIZON


def read_split(logs: str | Path, val_fraction: float) -> LogSplit:
    """Index `logs`, cut every drive's windows (broken and damaged logs reported and skipped), split by drive."""
    index = build_index(logs)
    broken, windows = dict(index.broken), {}
    for entry in index.drives:
        if not holds_window(entry):
            log.warning("drive %s: %d frames hold no prediction window", entry.drive, entry.frames)
            continue
        try:
            windows[entry.drive] = log_windows(index, [entry])
        except LogError as exc:  # the drive holds a window, so this is damage
            broken[entry.file] = str(exc)
    for name, error in broken.items():
        log.warning("skipped broken log %s: %s", name, error)
    readable = [d for d in index.drives if d.file not in broken]
    train, validation = split_drives(readable, val_fraction)
    if not train:
        raise LogError(f"log folder {logs}: no training drives ({len(readable)} readable, "
                       f"{len(validation)} held out by val_fraction {val_fraction})")  # fmt: skip
    if not validation:
        raise LogError(f"log folder {logs}: val_fraction {val_fraction} holds out none of its {len(train)} drives; "
                       "the rounds are scored on held-out drives")  # fmt: skip
    return LogSplit(index, val_fraction, train, validation, windows, broken)
