"""The log folder of a federated job: split by drive as `fleet train` splits it, every drive's windows read once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fleet.index import DriveEntry, LogIndex, build_index, split_drives
from fleet.logs import LogError
from fleet.train import log_windows
from prediction.windows import TrajectoryWindows

log = logging.getLogger(__name__)


@dataclass
class LogSplit:
    """A log folder split by drive, every drive's prediction windows read once (runs on one folder share it)."""

    index: LogIndex
    val_fraction: float
    train: list[DriveEntry]
    validation: list[DriveEntry]
    windows: dict[str, TrajectoryWindows]  # by drive name; a drive too short for one window is absent

    def windows_of(self, drives: Sequence[DriveEntry]) -> TrajectoryWindows:
        """The windows of `drives`, in their order, agent slots padded to the widest and trimmed."""
        parts = [self.windows[d.drive] for d in drives if d.drive in self.windows]
        if not parts:
            raise LogError(f"log folder {self.index.root}: none of {[d.drive for d in drives]} is long enough "
                           "for one prediction window")  # fmt: skip
        return TrajectoryWindows.concat(parts).trimmed()


def read_split(logs: str | Path, val_fraction: float) -> LogSplit:
    """Index `logs` (broken logs reported and skipped), split by drive and cut every drive's windows."""
    index = build_index(logs)
    for name, error in index.broken.items():
        log.warning("skipped broken log %s: %s", name, error)
    train, validation = split_drives(index.drives, val_fraction)
    if not train:
        raise LogError(f"log folder {logs}: no training drives ({len(index.drives)} readable, "
                       f"{len(validation)} held out by val_fraction {val_fraction})")  # fmt: skip
    if not validation:
        raise LogError(f"log folder {logs}: val_fraction {val_fraction} holds out none of its {len(train)} drives; "
                       "the rounds are scored on held-out drives")  # fmt: skip
    windows = {}
    for entry in [*train, *validation]:
        try:
            windows[entry.drive] = log_windows(index, [entry])
        except LogError:  # too short for one window (log_windows has warned)
            continue
    return LogSplit(index, val_fraction, train, validation, windows)
