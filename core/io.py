"""Atomic writers: a file is either its previous content or the complete new one.

The content is rendered in memory first (so a value that cannot be serialised
fails before anything is touched), written to a temporary file in the target's
directory, flushed and fsynced, then moved over the target with `os.replace`.
Writers that take a file name (safetensors, OpenCV, PIL) write into `atomic_path`'s
temporary file; every file the project writes whole goes through `atomic_path`
(a drive log, written over a whole drive, moves its own partial file into place).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

_CELL_TYPES = (str, int, float, bool, type(None))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Replace `path` by `text` (UTF-8) atomically; on failure the old file is untouched."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file next to `path` for the block to write (its name ends in `path`'s suffix, which
    some writers read the format from); when the block ends without error the file is fsynced and moved
    over `path`, otherwise removed, leaving `path` as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide results from the other users of a shared machine
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace `path` by `data` atomically; on failure the old file is untouched."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_copy(source: str | Path, target: str | Path) -> Path:
    """Copy `source` to `target` atomically (a no-op onto itself)."""
    source, target = Path(source), Path(target)
    if source.resolve() == target.resolve():
        return target
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return target


def sha256_file(path: str | Path) -> str:
    """The file's SHA-256 (hex), read in 1 MiB blocks: what identifies a checkpoint or graph by content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def jsonable(value: Any) -> Any:
    """Dataclasses, paths and tuples as plain JSON values; NaN and inf as None (JSON has neither)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: Any) -> None:
    """Write `data` as indented JSON atomically (`jsonable` first); raises TypeError, before touching the
    file, for a value JSON cannot hold."""
    atomic_write_text(path, json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n")


def write_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], path: str | Path) -> None:
    """Write `rows` under `columns` (missing cells empty, None empty, NaN empty).

    Raises TypeError naming the row and column of a cell that is not a str, int,
    float, bool or None, before touching the file.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for r, row in enumerate(rows):
        cells = []
        for column in columns:
            value = row.get(column)
            if not isinstance(value, _CELL_TYPES):
                raise TypeError(
                    f"{Path(path).name}: row {r}, column {column!r}: cannot write a {type(value).__name__} to CSV"
                )
            if value is None or (isinstance(value, float) and math.isnan(value)):
                value = ""
            cells.append(value)
        writer.writerow(cells)
    atomic_write_text(path, buffer.getvalue())
