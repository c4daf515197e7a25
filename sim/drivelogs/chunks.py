"""The messages of an MCAP file's chunks, read straight from the chunk index: random access for training.

The `mcap` package parses a chunk a field at a time through Python streams; a
training read of a few frames spent more time there than in decompressing. This
reads a chunk record whole, decompresses it (zstd or none) into its declared
size, checks its CRC, and walks its records with `struct`, yielding the messages
of the wanted channels inside a time span. Everything read is bounds-checked: a
damaged or hostile chunk raises `ValueError` (or `EOFError`, `ZstdError`) saying
what is wrong, never reads outside its bytes, and never decompresses past its
declared size. The record layout is the MCAP specification's (mcap.dev/spec).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import zstandard
from mcap.records import ChunkIndex

CHUNK_OPCODE = 0x06
MESSAGE_OPCODE = 0x05
_RECORD = struct.Struct("<BQ")  # opcode, content length
_CHUNK_HEAD = struct.Struct("<QQQI")  # message start time, end time, uncompressed size, uncompressed CRC
_MESSAGE_HEAD = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")
MAX_CHUNK_BYTES = 1 << 30  # a chunk declaring more (decompressed) is refused, not allocated


@dataclass(frozen=True)
class ChunkMessage:
    """One message of a chunk: what `sim.drivelogs.format.decode_message` reads of it."""

    channel_id: int
    sequence: int
    log_time: int
    data: bytes


def holds_channel(index: ChunkIndex, channel_ids: Collection[int]) -> bool:
    """Whether the chunk holds messages of any of `channel_ids` (its message indexes say which it holds)."""
    return any(channel in index.message_index_offsets for channel in channel_ids)


def chunk_messages(
    records: memoryview, index: ChunkIndex, channel_ids: Collection[int], start_ns: int, end_ns: int
) -> Iterator[ChunkMessage]:
    """The messages of `channel_ids` logged from `start_ns` to `end_ns` (both included) in the chunk that
    `index` points to, whose `records` (`chunk_records`) are given, in the order written."""
    position = 0
    while position < len(records):
        if position + _RECORD.size > len(records):
            raise ValueError(f"chunk at byte {index.chunk_start_offset}: a record header runs past the chunk's end")
        opcode, length = _RECORD.unpack_from(records, position)
        position += _RECORD.size
        if length > len(records) - position:
            raise ValueError(f"chunk at byte {index.chunk_start_offset}: a record of {length} bytes runs past its end")
        if opcode == MESSAGE_OPCODE:
            if length < _MESSAGE_HEAD.size:
                raise ValueError(f"chunk at byte {index.chunk_start_offset}: a message record of {length} bytes")
            channel, sequence, log_time, _ = _MESSAGE_HEAD.unpack_from(records, position)
            if channel in channel_ids and start_ns <= log_time <= end_ns:
                data = bytes(records[position + _MESSAGE_HEAD.size : position + length])
                yield ChunkMessage(channel, sequence, log_time, data)
        position += length


def chunk_records(stream: BinaryIO, index: ChunkIndex) -> memoryview:
    """The records of the chunk `index` points to, decompressed and CRC-checked."""
    where = f"chunk at byte {index.chunk_start_offset}"
    if not 0 < index.chunk_length <= MAX_CHUNK_BYTES:
        raise ValueError(f"{where}: the index gives it {index.chunk_length} bytes")
    stream.seek(index.chunk_start_offset)
    raw = stream.read(index.chunk_length)
    if len(raw) != index.chunk_length:
        raise EOFError(f"{where}: the file ends {index.chunk_length - len(raw)} bytes into it")
    opcode, length = _RECORD.unpack_from(raw, 0)
    if opcode != CHUNK_OPCODE or _RECORD.size + length != len(raw):
        raise ValueError(f"{where}: not a chunk record of the length its index gives")
    position = _RECORD.size
    _, _, size, crc = _CHUNK_HEAD.unpack_from(raw, position)
    position += _CHUNK_HEAD.size
    (name_length,) = _U32.unpack_from(raw, position)
    compression = bytes(raw[position + 4 : position + 4 + name_length]).decode("utf-8", "replace")
    position += 4 + name_length
    (records_length,) = _U64.unpack_from(raw, position)
    position += 8
    if position + records_length != len(raw) or size > MAX_CHUNK_BYTES:
        raise ValueError(f"{where}: records of {records_length} bytes ({size} decompressed) do not fit the chunk")
    body = memoryview(raw)[position:]
    if compression == "zstd":  # read at most one byte past the declared size: a frame's own header may lie
        with zstandard.ZstdDecompressor().stream_reader(body) as reader:
            records = reader.read(size + 1)
    elif compression == "":
        records = bytes(body)
    else:
        raise ValueError(f"{where}: compression {compression!r} (drive logs use zstd)")
    if len(records) != size:
        raise ValueError(f"{where}: {len(records)} bytes decompressed, {size} declared")
    if crc != 0 and zlib.crc32(records) != crc:  # 0: the writer computed none
        raise ValueError(f"{where}: CRC mismatch (the chunk is corrupted)")
    return memoryview(records)
