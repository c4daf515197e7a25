"""Drive logs: one MCAP file per drive, the format of ROS 2 and Foxglove.

    with DriveLogWriter("logs/cut_in-0007.mcap", drive="cut_in-0007") as log:
        log.write("/sensor/frame", time_s, frame.to_flat("frame"))       # any named tensors
    for record in read_drive("logs/cut_in-0007.mcap"):
        record.topic, record.time_s, record.tensors                        # numpy arrays by name
        frame = record.contract()                                          # SensorFrame for /sensor/frame

Every message is a safetensors buffer (`message_encoding="safetensors"`,
`sim.drivelogs.messages`): the tensors' raw little-endian bytes with their dtype and
shape, in zstd-compressed chunks. Standard MCAP tools (`mcap info`, `mcap cat`,
Foxglove) open the files without drivestack, any safetensors reader opens a
message, and the tensors stay exact. Logs of format 1 (JSON messages with
base64 tensors) are still read. Channels (`TOPICS`) carry the
sensor frames, the object sensor's ghosts drawn into them, the ego state,
ground-truth agents where known (world frame, and as detector labels in the ego
frame with their visibility), and the stack's outputs; after the last step the
final state's frame, ego, agents, labels and ghosts (so a dataset has a next
frame for the last step, and the prediction sampler the final sample). The
drive's identity and provenance are MCAP metadata (`drive`), how it ended
another (`result`: steps driven, the policy's error).

A file is written to a temporary name and renamed when finished, so a killed
recorder never leaves a file that looks complete. Reading streams records in
order; a truncated or corrupted file raises `LogError` naming the file and the
byte offset where reading failed, after yielding the records of every complete
chunk before it (a chunk is compressed as a whole).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from mcap.exceptions import McapError
from mcap.reader import NonSeekingReader, SeekingReader
from mcap.writer import CompressionType, Writer
from zstandard import ZstdError

from core.contracts import ContractError, TensorContract
from sim.drivelogs.messages import LEGACY_ENCODING, MESSAGE_ENCODING, decode, encode
from sim.state import AgentState, EgoState
from sim.types import ObjectList, SensorFrame

PROFILE = "drivestack"
FORMAT = "2"  # 1: JSON messages with base64 tensors (still read); 2: safetensors messages
LEGACY_SCHEMA_NAME = "drivestack.Tensors"  # format 1's JSON schema
DRIVE_METADATA = "drive"
# How the drive ended, written when it is closed: "steps" the policy drove (the frames logged after them are
# the final state's), "final_frame" ("1" when the final state is logged), "error" (the policy's, or "").
RESULT_METADATA = "result"

FRAME_TOPIC = "/sensor/frame"
EGO_TOPIC = "/ego/state"
TRUTH_TOPIC = "/agents/truth"
LABELS_TOPIC = "/agents/labels"
# The object sensor's false objects drawn into the frame: its reported ghosts only (`pad_ghosts`, then
# `valid_slots`), M = 0 in most frames.
GHOSTS_TOPIC = "/sensor/ghosts"
# Topic -> the contract its tensors rebuild (batch of one), or None for plain named tensors.
TOPICS: dict[str, type[TensorContract] | None] = {
    FRAME_TOPIC: SensorFrame,
    EGO_TOPIC: EgoState,
    TRUTH_TOPIC: AgentState,
    LABELS_TOPIC: ObjectList,
    GHOSTS_TOPIC: ObjectList,
    "/stack/detections": None,
    "/stack/tracks": None,
    "/stack/forecast": None,
    "/stack/plan": None,
}
# Topic -> the flat-name prefix its contract's tensors are written under (`frame.bev`, `ego.xy`, ...).
PREFIXES = {FRAME_TOPIC: "frame", EGO_TOPIC: "ego", TRUTH_TOPIC: "agents", LABELS_TOPIC: "labels",
            GHOSTS_TOPIC: "ghosts"}  # fmt: skip
# The topics of the final state, written after the last observed step (`sim.drivelogs.recorder`).
STATE_TOPICS = (FRAME_TOPIC, EGO_TOPIC, TRUTH_TOPIC, LABELS_TOPIC, GHOSTS_TOPIC)

# A chunk is closed once it holds this many bytes (uncompressed): two sensor frames of 128 x 128 cells (330 kB
# each) with their steps' other messages, about six of 64 x 64. A reader seeking a few frames for training
# decompresses about that much per chunk it needs, and keeps the chunk's other frames (`perception.logdata`).
# Measured on cut_in drives (docs/benchmarks.md): MCAP's default 1 MiB let pretraining read 2.4 chunks of
# about three frames per item; one frame per chunk read 10 % faster than two but made logs 20 % bigger (each
# chunk is compressed alone, so the map raster and the small messages repeat from chunk to chunk).
CHUNK_BYTES = 512 * 1024

# What a damaged file raises inside the MCAP reader: bad records, short reads, bad compressed chunks.
DAMAGE_ERRORS = (McapError, EOFError, ValueError, OSError, ZstdError, struct.error)


class LogError(ValueError):
    """A drive log is missing, truncated, corrupted, or holds a message that is not drivestack's."""


@dataclass(frozen=True)
class LogRecord:
    """One message of a drive: its topic, time and tensors (numpy, by name)."""

    topic: str
    time_s: float
    tensors: dict[str, np.ndarray]

    def contract(self, validate: bool = True) -> TensorContract:
        """The topic's contract (batch of one) rebuilt from the tensors, validated unless `validate` is False
        (for messages a `sim.drivelogs.index` entry has validated already)."""
        kind = TOPICS.get(self.topic)
        if kind is None:
            raise LogError(f"topic {self.topic}: plain named tensors, no contract to rebuild")
        named = {name: torch.from_numpy(value) for name, value in self.tensors.items()}
        try:
            contract = kind.from_flat(named, PREFIXES[self.topic])
            return contract.validate() if validate else contract
        except ContractError as exc:  # e.g. a log recorded before the contract gained a field
            raise LogError(f"topic {self.topic} at {self.time_s:.2f} s: {exc}") from exc


def is_tensor_channel(schema: Any, channel: Any) -> bool:
    """Whether a channel carries drivestack's tensor messages (either format), not, say, Foxglove's."""
    legacy = channel.message_encoding == LEGACY_ENCODING and schema is not None and schema.name == LEGACY_SCHEMA_NAME
    return channel.message_encoding == MESSAGE_ENCODING or legacy


def decode_message(schema: Any, channel: Any, message: Any, where: str) -> LogRecord:
    """The record of one MCAP message of a drivestack channel (either format); anything else is a `LogError`
    naming `where`."""
    if not is_tensor_channel(schema, channel):
        raise LogError(f"{where}: channel {channel.topic} ({channel.message_encoding!r}) is not a drivestack channel")
    try:
        time_s, tensors = decode(message.data, channel.message_encoding)
    except (ValueError, KeyError, TypeError) as exc:
        raise LogError(f"{where}, {channel.topic} #{message.sequence}: malformed drivestack message ({exc})") from exc
    return LogRecord(channel.topic, time_s, tensors)


class DriveLogWriter:
    """Writes one drive to `path` (atomically: a temporary file renamed by `close`)."""

    def __init__(self, path: str | Path, drive: str, metadata: Mapping[str, str] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.partial")
        self._stream: IO[bytes] = open(self._tmp, "wb")  # noqa: SIM115  (closed by close / abort)
        self._writer = Writer(self._stream, compression=CompressionType.ZSTD, chunk_size=CHUNK_BYTES)
        self._writer.start(profile=PROFILE, library=f"drivestack drive log {FORMAT}")
        self._channels: dict[str, int] = {}
        self._writer.add_metadata(DRIVE_METADATA, {"drive": drive, "format": FORMAT, **dict(metadata or {})})
        self.messages = 0

    def write(self, topic: str, time_s: float, tensors: Mapping[str, Any]) -> None:
        """One message on `topic` at `time_s` (s); tensors are batch-free (one drive) or batch-of-one."""
        if topic not in self._channels:
            # No schema record: a safetensors message describes itself (dtype, shape and bytes per tensor).
            self._channels[topic] = self._writer.register_channel(topic, MESSAGE_ENCODING, schema_id=0)
        stamp = int(round(time_s * 1e9))
        self._writer.add_message(self._channels[topic], log_time=stamp, data=encode(time_s, tensors),
                                 publish_time=stamp, sequence=self.messages)  # fmt: skip
        self.messages += 1

    def add_metadata(self, name: str, values: Mapping[str, str]) -> None:
        """A metadata record `name` of string values (e.g. `RESULT_METADATA`)."""
        self._writer.add_metadata(name, dict(values))

    def close(self) -> Path:
        """Finish the file (summary, indexes), flush it to disk and move it into place."""
        self._writer.finish()
        self._stream.flush()
        os.fsync(self._stream.fileno())
        self._stream.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file (a failed drive leaves nothing behind)."""
        self._stream.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> DriveLogWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    # Channels in other encodings beside the tensor channels (`sim.drivelogs.foxglove`'s protobuf channels).
    def register_encoded(self, topic: str, message_encoding: str, schema_id: int = 0) -> int:
        """A channel of already encoded messages (schema from `register_schema`, 0: none); its id for
        `write_encoded`. Its topic may not be a tensor channel's."""
        if topic in self._channels:
            raise ValueError(f"topic {topic}: already a drivestack tensor channel")
        return self._writer.register_channel(topic, message_encoding, schema_id=schema_id)

    def register_schema(self, name: str, encoding: str, data: bytes) -> int:
        """A schema record (e.g. `foxglove.SceneUpdate`, "protobuf", its FileDescriptorSet); its id."""
        return self._writer.register_schema(name, encoding, data)

    def write_encoded(self, channel_id: int, time_s: float, data: bytes) -> None:
        """One already encoded message on a channel of `register_encoded`, at `time_s` (s)."""
        stamp = int(round(time_s * 1e9))
        self._writer.add_message(channel_id, log_time=stamp, data=data, publish_time=stamp, sequence=self.messages)
        self.messages += 1


def read_drive(path: str | Path, topics: set[str] | None = None) -> Iterator[LogRecord]:
    """Every tensor message of the drive in file order (only `topics` when given), as `LogRecord`s. Without
    `topics`, channels of other encodings (the Foxglove channels) are passed over; a topic asked for by name
    that is not a tensor channel is a `LogError`."""
    path = Path(path)
    if not path.is_file():
        raise LogError(f"drive log {path}: not found")
    with open(path, "rb") as stream:
        try:
            reader = NonSeekingReader(stream, validate_crcs=True)
            for schema, channel, message in reader.iter_messages(topics=sorted(topics) if topics else None):
                if topics or is_tensor_channel(schema, channel):
                    yield decode_message(schema, channel, message, f"drive log {path}")
        except LogError:
            raise
        except DAMAGE_ERRORS as exc:
            raise corrupted_error(path, stream, exc) from exc


def drive_metadata(path: str | Path) -> dict[str, str]:
    """The drive's `drive` metadata record (identity, scenario, seed, policy, ...)."""
    records = metadata_records(path)
    if DRIVE_METADATA not in records:
        raise LogError(f"drive log {path}: no {DRIVE_METADATA!r} metadata (not a drivestack drive log)")
    return records[DRIVE_METADATA]


def metadata_records(path: str | Path) -> dict[str, dict[str, str]]:
    """Every metadata record of the log by name (`DRIVE_METADATA`, `RESULT_METADATA` once the drive ended),
    found through the summary's metadata index (a log without a summary is streamed: every record is read)."""
    path = Path(path)
    records = {}
    with open(path, "rb") as stream:
        try:
            for record in SeekingReader(stream).iter_metadata():
                records[record.name] = dict(record.metadata)
        except DAMAGE_ERRORS as exc:
            raise corrupted_error(path, stream, exc) from exc
    return records


def corrupted_error(path: Path, stream: IO[bytes], exc: Exception) -> LogError:
    return LogError(f"drive log {path}: truncated or corrupted at byte {stream.tell()} ({type(exc).__name__}: {exc})")
