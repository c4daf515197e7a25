"""The index of a folder of drive logs, and splits that never cut a drive in two.

    index = build_index("logs")            # scans *.mcap, writes logs/index.json, skips broken logs
    train, val = split_drives(index.drives, val_fraction=0.2)
    records = read_frame(index, index.drives[0], 17, ["/sensor/frame", "/agents/truth"])  # random access

`index.json` holds, per drive: the file name, size and modification time (a
changed file is re-read), the drive's metadata and the times of its sensor
frames; random access seeks through the MCAP chunk index to that time, so a
dataset never scans a whole log for one frame. A log that cannot be read is
reported in `index.broken` with its error and left out; the others are indexed.

Splits are by drive, never by frame (frames of one drive are near-duplicates):
a drive goes to validation when a hash of its name falls below the fraction,
so the split is the same on every machine and a new drive never moves an old one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mcap.reader import SeekingReader
from mcap.summary import Summary

from core.io import atomic_write_text
from fleet.logs import DAMAGE_ERRORS, LogError, LogRecord, corrupted_error, decode_message, drive_metadata, read_drive

INDEX_FILE = "index.json"
INDEX_FORMAT = 1
FRAME_TOPIC = "/sensor/frame"


@dataclass(frozen=True)
class DriveEntry:
    """One indexed drive."""

    file: str
    drive: str
    size: int
    mtime_ns: int
    metadata: dict[str, str]
    frame_times: list[float]

    @property
    def frames(self) -> int:
        return len(self.frame_times)


@dataclass
class LogIndex:
    """The drives of one log folder, and the logs that could not be read."""

    root: Path
    drives: list[DriveEntry] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)

    def path(self, entry: DriveEntry) -> Path:
        return self.root / entry.file

    def save(self) -> Path:
        data = {"format": INDEX_FORMAT, "drives": [asdict(d) for d in self.drives], "broken": self.broken}
        atomic_write_text(self.root / INDEX_FILE, json.dumps(data) + "\n")
        return self.root / INDEX_FILE


def _entry(path: Path) -> DriveEntry:
    """Read one log end to end (so a broken one is found now, not mid-training)."""
    metadata = drive_metadata(path)
    times = [r.time_s for r in read_drive(path, {FRAME_TOPIC})]
    stat = path.stat()
    return DriveEntry(path.name, metadata["drive"], stat.st_size, stat.st_mtime_ns, metadata, times)


def _load(root: Path) -> dict[str, DriveEntry]:
    try:
        data = json.loads((root / INDEX_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    if data.get("format") != INDEX_FORMAT:
        return {}
    return {d["file"]: DriveEntry(**d) for d in data["drives"]}


def build_index(root: str | Path, save: bool = True) -> LogIndex:
    """Index every `*.mcap` under `root` (reusing entries whose file is unchanged); broken logs are
    recorded in `broken` with the reader's error and skipped."""
    root = Path(root)
    if not root.is_dir():
        raise LogError(f"log folder {root}: not found")
    known = _load(root)
    index = LogIndex(root)
    for path in sorted(root.glob("*.mcap")):
        stat = path.stat()
        cached = known.get(path.name)
        if cached and (cached.size, cached.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            index.drives.append(cached)
            continue
        try:
            index.drives.append(_entry(path))
        except LogError as exc:
            index.broken[path.name] = str(exc)
    names = [d.drive for d in index.drives]
    if len(set(names)) != len(names):
        raise LogError(f"log folder {root}: two files claim the same drive name")
    if save:
        index.save()
    return index


def in_validation(drive: str, val_fraction: float, salt: str = "") -> bool:
    """Whether `drive` belongs to the validation split: a hash of its name, uniform in [0, 1)."""
    digest = hashlib.sha256(f"{salt}{drive}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def split_drives(
    drives: Sequence[DriveEntry], val_fraction: float, salt: str = ""
) -> tuple[list[DriveEntry], list[DriveEntry]]:
    """(train, validation) by drive; see the module docstring."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a number in [0, 1), got {val_fraction!r}")
    val = [d for d in drives if in_validation(d.drive, val_fraction, salt)]
    train = [d for d in drives if not in_validation(d.drive, val_fraction, salt)]
    return train, val


def read_span(path: Path, start_s: float, end_s: float, topics: Sequence[str]) -> list[LogRecord]:
    """The messages on `topics` logged from `start_s` to `end_s` (both included) in the log `path`, in time
    order, found through its chunk index: only the chunks that hold them are read and decompressed."""
    records: list[LogRecord] = []
    with open(path, "rb") as stream:
        try:
            stat = os.fstat(stream.fileno())
            reader = _KnownSummaryReader(stream, _summary(str(path), stat.st_size, stat.st_mtime_ns))
            span = {"starting_at": _stamp(start_s), "ending_at": _stamp(end_s)}
            for schema, channel, message in reader.iter_messages(topics=list(topics), **span):
                records.append(decode_message(schema, channel, message, f"drive log {path}"))
        except LogError:
            raise
        except DAMAGE_ERRORS as exc:
            raise corrupted_error(path, stream, exc) from exc
    return records


class _KnownSummaryReader(SeekingReader):
    """A seeking reader given the file's summary (channels, chunk indexes), read once per file version:
    reading it again for every span cost about 15 % of a pretraining read."""

    def __init__(self, stream, summary: Summary | None):
        super().__init__(stream, validate_crcs=True)
        self._known = summary

    def get_summary(self) -> Summary | None:
        return self._known


@functools.lru_cache(maxsize=256)
def _summary(path: str, size: int, mtime_ns: int) -> Summary | None:
    """The summary section of the log at `path` as it is at (`size`, `mtime_ns`): a replaced file is read anew."""
    with open(path, "rb") as stream:
        return SeekingReader(stream, validate_crcs=True).get_summary()


def _stamp(time_s: float) -> int:
    return int(round(time_s * 1e9))


def read_at(path: Path, time_s: float, topics: Sequence[str]) -> dict[str, LogRecord]:
    """The messages on `topics` logged at `time_s` in the log `path`, found through its chunk index."""
    return {record.topic: record for record in read_span(path, time_s, time_s, topics)}


def read_frame(index: LogIndex, entry: DriveEntry, i: int, topics: Sequence[str] = (FRAME_TOPIC,)) -> dict:
    """Frame `i` of drive `entry` with the other `topics` logged at the same time."""
    if not 0 <= i < entry.frames:
        raise IndexError(f"drive {entry.drive}: frame {i} out of range (it has {entry.frames})")
    records = read_at(index.path(entry), entry.frame_times[i], topics)
    missing = sorted(set(topics) - set(records))
    if missing:
        raise LogError(f"drive log {index.path(entry)}: no {missing} at t = {entry.frame_times[i]} s")
    return records
