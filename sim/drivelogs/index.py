"""The index of a folder of drive logs, and splits that never cut a drive in two.

    index = build_index("logs")            # scans *.mcap, writes logs/index.json, skips broken logs
    train, val = split_drives(index.drives, val_fraction=0.2)
    records = read_frame(index, index.drives[0], 17, ["/sensor/frame", "/agents/truth"])  # random access

`index.json` holds, per drive: the file name, size and modification time (a
changed file is re-read), the drive's metadata and the times of its sensor
frames. Indexing reads each log whole and checks its frames and labels against
their contracts, once per file version, so the datasets need not. Random
access seeks through the MCAP chunk index to a frame's time, so a dataset never
scans a whole log for one frame. A log that cannot be read is
reported in `index.broken` with its error and left out; the others are indexed.

Splits are by drive, never by frame (frames of one drive are near-duplicates):
a drive goes to validation when a hash of its name falls below the fraction,
so the split is the same on every machine and a new drive never moves an old one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

from mcap.reader import SeekingReader
from mcap.records import Channel
from mcap.summary import Summary

from core.io import atomic_write_text
from sim.config import RasterConfig
from sim.drivelogs.chunks import ChunkMessage, chunk_messages, chunk_records, holds_channel
from sim.drivelogs.format import (
    DAMAGE_ERRORS,
    DRIVE_METADATA,
    FRAME_TOPIC,
    GHOSTS_TOPIC,
    LABELS_TOPIC,
    RESULT_METADATA,
    LogError,
    LogRecord,
    corrupted_error,
    decode_message,
    metadata_records,
    read_drive,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

INDEX_FILE = "index.json"
# 2: the frame and label messages of an indexed log were checked against their contracts; 3: with the ghosts,
# and each drive's result record
INDEX_FORMAT = 3
# Checked once, when a log is indexed: the datasets read these topics without checking each message again.
VALIDATED_TOPICS = (FRAME_TOPIC, LABELS_TOPIC, GHOSTS_TOPIC)


@dataclass(frozen=True)
class DriveEntry:
    """One indexed drive: its file's name and version, its metadata (`drive` record), the times of its
    sensor frames (the final state's last, when logged), how it ended (`result` record; empty in logs
    recorded before drives had one) and which of the `VALIDATED_TOPICS` it holds (older logs lack some)."""

    file: str
    drive: str
    size: int
    mtime_ns: int
    metadata: dict[str, str]
    frame_times: list[float]
    result: dict[str, str] = field(default_factory=dict)
    topics: list[str] = field(default_factory=list)  # the `VALIDATED_TOPICS` it holds

    @property
    def frames(self) -> int:
        """Sensor frames logged, the final state's included."""
        return len(self.frame_times)

    @property
    def steps(self) -> int:
        """Steps the policy drove: the frames it saw (every frame in a log without a final state)."""
        return self.frames - 1 if self.result.get("final_frame") == "1" else self.frames


@dataclass
class LogIndex:
    """The drives of one log folder, and the logs that could not be read."""

    root: Path
    drives: list[DriveEntry] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)

    def path(self, entry: DriveEntry) -> Path:
        return self.root / entry.file

    def warn_broken(self) -> None:
        """A warning per log left out as broken, with its error (a job reads the others)."""
        for name, error in self.broken.items():
            log.warning("skipped broken log %s: %s", name, error)

    def save(self) -> Path:
        data = {"format": INDEX_FORMAT, "drives": [asdict(d) for d in self.drives], "broken": self.broken}
        atomic_write_text(self.root / INDEX_FILE, json.dumps(data) + "\n")
        return self.root / INDEX_FILE


def _entry(path: Path) -> DriveEntry:
    """Read one log end to end, checking its frames and labels against their contracts (`VALIDATED_TOPICS`),
    so a broken or hostile log is found now, not mid-training, and the datasets trust what they read of
    this file version (its size and modification time) without checking every message again: checking
    each frame as it was read cost a third of a pretraining read."""
    records = metadata_records(path)
    if DRIVE_METADATA not in records:
        raise LogError(f"drive log {path}: no {DRIVE_METADATA!r} metadata (not a drivestack drive log)")
    metadata = records[DRIVE_METADATA]
    for name in ("seed", "suite_position"):
        if name in metadata and not metadata[name].isdigit():
            raise LogError(f"drive log {path}: metadata {name} {metadata[name]!r}, expected an integer >= 0")
    times, topics = [], set()
    for record in read_drive(path, set(VALIDATED_TOPICS)):
        try:
            record.contract()
        except LogError as exc:
            raise LogError(f"drive log {path}: {exc}") from exc
        topics.add(record.topic)
        if record.topic == FRAME_TOPIC:
            times.append(record.time_s)
    stat = path.stat()
    result = records.get(RESULT_METADATA, {})
    held = [t for t in VALIDATED_TOPICS if t in topics]
    return DriveEntry(path.name, metadata["drive"], stat.st_size, stat.st_mtime_ns, metadata, times, result, held)


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
    index.drives = suite_order(index.drives)
    names = [d.drive for d in index.drives]
    if len(set(names)) != len(names):
        raise LogError(f"log folder {root}: two files claim the same drive name")
    if save:
        index.save()
    return index


def logged_raster(index: LogIndex, drives: Sequence[DriveEntry] | None = None) -> RasterConfig:
    """The raster `drives` (default: every drive of `index`) were recorded with; they must agree."""
    drives = index.drives if drives is None else drives
    rasters = {d.metadata.get("raster") for d in drives}
    if len(rasters) != 1 or None in rasters:
        raise LogError(f"logs {index.root}: drives disagree on (or do not record) their raster: "
                       f"{sorted(map(str, rasters))}")  # fmt: skip
    try:
        return RasterConfig(**json.loads(rasters.pop()))
    except (TypeError, ValueError) as exc:  # hostile or older metadata
        raise LogError(f"logs {index.root}: malformed raster metadata ({exc})") from exc


def require_raster(index: LogIndex, drives: Sequence[DriveEntry], raster: RasterConfig) -> None:
    """Refuse `drives` recorded at another raster than the reader's `raster` (a detector's): their frames have
    another geometry."""
    recorded = logged_raster(index, drives)
    if recorded != raster:
        raise LogError(f"logs {index.root}: recorded at {recorded}, but the detector reads {raster}; record them "
                       "at the detector's raster (drivestack fleet record --raster-size, --resolution)")  # fmt: skip


def suite_order(drives: Sequence[DriveEntry]) -> list[DriveEntry]:
    """`drives` in the order their suites run them: by suite, the scenario's place in it, then seed (the
    order a dataset generated from the suite had); drives recorded without a suite come last, by file."""

    def key(entry: DriveEntry) -> tuple:
        meta = entry.metadata
        if "suite_position" not in meta:
            return (1, "", 0, 0, entry.file)
        return (0, meta["suite"], int(meta["suite_position"]), int(meta["seed"]), entry.file)

    return sorted(drives, key=key)


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


def read_each(
    index: LogIndex, drives: Sequence[DriveEntry], read: Callable[[DriveEntry], T]
) -> tuple[list[T], dict[str, str]]:
    """`read(entry)` for every drive; a drive that raises `LogError` (damaged past indexing: a missing channel,
    dropped frames) is reported, skipped and returned as (file: error), so the job goes on with the others."""
    values, damaged = [], {}
    for entry in drives:
        try:
            values.append(read(entry))
        except LogError as exc:
            log.warning("skipped damaged log %s: %s", entry.file, exc)
            damaged[entry.file] = str(exc)
    return values, damaged


def read_span(
    path: Path, start_s: float, end_s: float, topics: Sequence[str], whole_chunks: bool = False
) -> list[LogRecord]:
    """The messages on `topics` logged from `start_s` to `end_s` (both included) in the log `path`, in time
    order, found through its chunk index: only the chunks that hold them are read and decompressed
    (`sim.drivelogs.chunks`). `whole_chunks`: every message on `topics` in those chunks, also those logged a little
    before or after the span, which a reader caching frames gets for the price of the span."""
    where = f"drive log {path}"
    start_ns, end_ns = _stamp(start_s), _stamp(end_s)
    with open(path, "rb") as stream:
        try:
            stat = os.fstat(stream.fileno())
            summary = _summary(str(path), stat.st_size, stat.st_mtime_ns)
            if summary is None:
                raise ValueError("no summary section (was the recorder killed before it finished?)")
            channels = {i: c for i, c in summary.channels.items() if c.topic in topics}
            chunks = [c for c in summary.chunk_indexes if c.message_start_time <= end_ns
                      and c.message_end_time >= start_ns and holds_channel(c, channels)]  # fmt: skip
            messages = []
            for chunk in chunks:
                records = chunk_records(stream, chunk)
                within = (chunk.message_start_time, chunk.message_end_time) if whole_chunks else (start_ns, end_ns)
                messages += chunk_messages(records, chunk, channels, *within)
        except DAMAGE_ERRORS as exc:
            raise corrupted_error(path, stream, exc) from exc
    messages.sort(key=lambda m: m.log_time)  # stable: messages of one time keep their written order
    return [_record(summary, channels[m.channel_id], m, where) for m in messages]


def _record(summary: Summary, channel: Channel, message: ChunkMessage, where: str) -> LogRecord:
    return decode_message(summary.schemas.get(channel.schema_id), channel, message, where)


@functools.lru_cache(maxsize=256)
def _summary(path: str, size: int, mtime_ns: int) -> Summary | None:
    """The summary section (channels, chunk indexes) of the log at `path` as it is at (`size`, `mtime_ns`),
    read once per file version (reading it for every span cost about 15 % of a pretraining read); a
    replaced file is read anew."""
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
