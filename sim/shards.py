"""A suite run split across processes: which batches each rank simulates, and how rank 0 gets them all.

    torchrun --nproc-per-node 2 -m stack.cli sim --suite hard --policy pdm --seeds 20 --out runs/hard

The run's plan (its batches, `sim.suite`) is dealt out whole, batch i to rank
i mod world, so every episode is simulated in the same batch, with the same
companions, as in one process: the merged results are the one-process results,
bit for bit. Each rank keeps its own journal in `<out>/ranks/rank-<r>/` (so a
killed rank resumes its share), the ranks exchange their batches as JSON (no
pickle crosses between processes, `core.distributed.all_gather_json`), and
rank 0 writes the run's outputs exactly as one process would.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.config import ConfigError
from sim.journal import batch_record
from sim.runner import EpisodeResult
from sim.scenarios import Scenario

RANKS = "ranks"

Batch = tuple[Scenario, list[int]]
BatchKey = tuple[str, tuple[int, ...]]


def rank_folder(out: Path, rank: int) -> Path:
    """Where rank `rank` journals its share of the run in `out`."""
    return out / RANKS / f"rank-{rank}"


def share(plan: Sequence[Batch], rank: int, world: int) -> list[Batch]:
    """The batches rank `rank` of `world` simulates: every world-th, from its rank on. Whole batches, so each
    episode runs with the companions it has in one process."""
    return list(plan[rank::world])


def key(batch: Batch) -> BatchKey:
    scenario, seeds = batch
    return scenario.name, tuple(seeds)


def encode(batches: Sequence[BatchKey], rows: Sequence[EpisodeResult]) -> list[dict[str, Any]]:
    """A rank's finished batches as JSON values, `rows` being their episodes in the order of `batches`."""
    encoded, start = [], 0
    for scenario, seeds in batches:
        encoded.append(batch_record(scenario, seeds, rows[start : start + len(seeds)]))
        start += len(seeds)
    if start != len(rows):
        raise ValueError(f"encode: {len(rows)} episodes for batches of {start}")
    return encoded


def decode(batches: Sequence[dict[str, Any]]) -> dict[BatchKey, list[EpisodeResult]]:
    """`encode`'s batches back, by key."""
    return {(b["scenario"], tuple(b["seeds"])): [EpisodeResult(**e) for e in b["episodes"]] for b in batches}


def merge(gathered: Sequence[Sequence[dict[str, Any]]], plan: Sequence[Batch]) -> dict[BatchKey, list[EpisodeResult]]:
    """Every rank's batches by key, in the plan's order; a planned batch no rank ran is an error."""
    found = {k: rows for batches in gathered for k, rows in decode(batches).items()}
    missing = [k for k in map(key, plan) if k not in found]
    if missing:
        raise ConfigError(f"{len(missing)} planned batches came back from no rank, e.g. {missing[0]}")
    return {k: found[k] for k in map(key, plan)}
