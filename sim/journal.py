"""The episodes of a suite run, appended as each batch finishes, so an interrupted run keeps its work.

    runs/sim/episodes.jsonl
      {"journal": 1, "settings": {...}, "episodes": 160}          the header: what run this is
      {"scenario": "merge", "seeds": [5000, ...], "episodes": [...]} one line per finished batch

A batch is one line written with one `write` and an fsync, so a run killed at
any moment leaves whole batches and at most one torn last line, which reading
leaves out (that batch is simulated again, and written over it). Batches are never split: a resumed run
simulates exactly the batches an uninterrupted one would, so its results are
byte-identical. The floats go through JSON's shortest round-trip repr, which
Python reads back to the same bits (NaN and infinities included).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import ConfigError
from core.io import atomic_write_bytes
from sim.runner import EpisodeResult

JOURNAL = "episodes.jsonl"
LOCK = ".episodes.lock"
# Bump when the header or a batch line changes, or `EpisodeResult`'s fields do: a journal of another
# format is refused by name instead of read wrong.
FORMAT = 1


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: the message says what was kept and how to go on."""


@dataclass
class Journal:
    """An opened journal: the run's settings, its size, and the batches finished so far, by (scenario, seeds)."""

    path: Path
    settings: dict[str, Any]
    total: int
    size: int  # bytes of whole lines: the next batch is written here, over a torn last line if there is one
    batches: dict[tuple[str, tuple[int, ...]], list[EpisodeResult]] = field(default_factory=dict)

    @property
    def episodes(self) -> int:
        return sum(len(rows) for rows in self.batches.values())

    @property
    def finished(self) -> bool:
        return self.episodes >= self.total

    def has(self, scenario: str, seeds: Sequence[int]) -> bool:
        return (scenario, tuple(seeds)) in self.batches

    def results(self, plan: Sequence[tuple[str, Sequence[int]]]) -> list[EpisodeResult]:
        """The episodes in the order of `plan`'s batches; a stored batch the plan lacks is an error."""
        keys = [(scenario, tuple(seeds)) for scenario, seeds in plan]
        planned = set(keys)
        stray = [key for key in self.batches if key not in planned]
        if stray:
            raise ConfigError(f"{self.path}: holds batches this run does not plan, e.g. {stray[0]}")
        return [row for key in keys if key in self.batches for row in self.batches[key]]

    def append(self, scenario: str, seeds: Sequence[int], rows: Sequence[EpisodeResult]) -> None:
        """One finished batch, durably, as one line."""
        line = (json.dumps(batch_record(scenario, seeds, rows)) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.ftruncate(fd, self.size)
            os.pwrite(fd, line, self.size)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.size += len(line)
        self.batches[(scenario, tuple(seeds))] = list(rows)


def batch_record(scenario: str, seeds: Sequence[int], rows: Sequence[EpisodeResult]) -> dict[str, Any]:
    """A finished batch as a JSON value: the journal's line, and what ranks exchange (`sim.shards`)."""
    return {"scenario": scenario, "seeds": list(seeds), "episodes": [dataclasses.asdict(r) for r in rows]}


def start(out: Path, settings: Mapping[str, Any], total: int) -> Journal:
    """A new journal in `out` (replacing any old one) holding only its header."""
    path = out / JOURNAL
    header = (json.dumps({"journal": FORMAT, "settings": dict(settings), "episodes": total}) + "\n").encode()
    atomic_write_bytes(path, header)
    return Journal(path, dict(settings), total, len(header))


def read(out: Path) -> Journal | None:
    """The journal in `out` (None if there is none), up to its last whole batch (a torn last line, from a
    run killed while writing it, is left out, and written over by the next append)."""
    path = out / JOURNAL
    if not path.is_file():
        return None
    data = path.read_bytes()
    lines = data.split(b"\n")
    header = _parse(lines[0], path, 1)
    if not (isinstance(header, dict) and header.get("journal") == FORMAT and isinstance(header.get("settings"), dict)
            and isinstance(header.get("episodes"), int)):  # fmt: skip
        raise ConfigError(f"{path}: line 1 is not a format-{FORMAT} drivestack journal header")
    journal = Journal(path, header["settings"], header["episodes"], len(lines[0]) + 1)
    for number, line in enumerate(lines[1:-1], start=2):  # lines[-1] follows the last newline: torn or empty
        batch = _parse(line, path, number)
        journal.batches[(batch["scenario"], tuple(batch["seeds"]))] = [
            _episode(e, path, number) for e in batch["episodes"]
        ]
        journal.size += len(line) + 1
    return journal


@contextlib.contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold `out`'s run lock: a second run into the same folder would write over this one's journal. The
    lock is the OS's (`flock`), so a killed run never leaves a stale one behind."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK, "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{out}: another run is writing there now; wait for it or choose another --out") from None
        yield


def discard_journal(out: Path) -> None:
    """Remove the journal in `out`, for a caller that reruns a folder's run with other settings."""
    (out / JOURNAL).unlink(missing_ok=True)


def differences(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    """`key: stored -> wanted` for each setting that differs."""
    keys = sorted(set(stored) | set(wanted))
    return [f"{k}: {stored.get(k)!r} -> {wanted.get(k)!r}" for k in keys if stored.get(k) != wanted.get(k)]


def _parse(line: bytes, path: Path, number: int) -> Any:
    try:
        value = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: line {number} is not valid JSON ({exc.__class__.__name__})") from None
    if number > 1 and not _is_batch(value):
        raise ConfigError(f"{path}: line {number}: expected a batch with scenario, seeds and episodes")
    return value


def _is_batch(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("scenario"), str)
        and isinstance(value.get("seeds"), list)
        and isinstance(value.get("episodes"), list)
    )


def _episode(record: Any, path: Path, number: int) -> EpisodeResult:
    try:
        return EpisodeResult(**record)
    except TypeError as exc:
        raise ConfigError(f"{path}: line {number}: an episode record does not match EpisodeResult ({exc})") from None
