"""The federated loop: rounds of local runs and the server's average, the global model saved after every round,
and resuming a killed run from its last finished round (it then ends as one that ran through)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.io import write_json
from fleet.federated.config import GLOBAL_NAME, ROUNDS_NAME, SCRATCH_DIR, FederatedConfig
from fleet.federated.data import LogSplit, read_split
from fleet.federated.resume import drive_lists, resume_point, save_global
from fleet.federated.rounds import local_round, predictor_from, validation_scores
from fleet.federated.server import average_weights
from fleet.federated.vehicles import Vehicle, make_fleet
from fleet.train import MANIFEST, drive_manifest


def write_logs(cfg: FederatedConfig, split: LogSplit, fleet: list[Vehicle], rounds: list[dict[str, Any]]) -> None:
    """`drives.json` (the manifest `fleet train` writes, plus each vehicle's drives) and `rounds.json`."""
    out = Path(cfg.out)
    vehicles = [{"vehicle": v.number, "drives": list(v.drives), "windows": v.num_windows} for v in fleet]
    manifest = drive_manifest(split.index.root, split.train, split.validation, split.broken)
    write_json(out / MANIFEST, {**manifest, "vehicles": [list(v.drives) for v in fleet]})
    validation = {
        "drives": [d.drive for d in split.validation],
        "windows": split.windows_of(split.validation).batch_size,
    }
    write_json(out / ROUNDS_NAME, {"config": cfg, "vehicles": vehicles, "validation": validation, "rounds": rounds})


@dataclass(frozen=True)
class FederatedResult:
    model: Path  # the global model after the last finished round
    rounds: list[dict[str, Any]]  # one entry per finished round (see `rounds.json`)
    finished: bool  # every round is done (False when stopped by stop_after_round)


def federated_train(
    logs: str | Path,
    cfg: FederatedConfig,
    *,
    split: LogSplit | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> FederatedResult:
    """FedAvg rounds (see `fleet.federated`), resuming from `cfg.out` when `cfg.resume`. `split` reuses the
    windows already read from `logs`; `on_round` is called with each finished round's entry."""
    split = split if split is not None else read_split(logs, cfg.val_fraction)
    if split.val_fraction != cfg.val_fraction:
        raise ValueError(f"split: read with val_fraction {split.val_fraction}, the config has {cfg.val_fraction}")
    fleet = make_fleet(split, cfg)
    validation = split.windows_of(split.validation)
    path = Path(cfg.out) / GLOBAL_NAME
    drives = drive_lists(split, fleet)
    weights, rounds = resume_point(cfg, path, drives)
    write_logs(cfg, split, fleet, rounds)
    for number in range(len(rounds) + 1, cfg.last_round + 1):
        start = time.perf_counter()
        local = [local_round(weights, vehicle, cfg, number, Path(cfg.out) / SCRATCH_DIR) for vehicle in fleet]
        weights = average_weights([w for w, _ in local], [vehicle.num_windows for vehicle in fleet])
        steps = number * cfg.steps_per_round
        entry = {
            "round": number,
            "optimizer_steps": steps,  # by the whole fleet so far
            "samples": steps * cfg.batch_size,
            "validation": validation_scores(predictor_from(weights, cfg), validation, cfg),
            "vehicles": [report for _, report in local],
            "seconds": time.perf_counter() - start,
        }
        rounds.append(entry)
        save_global(weights, cfg, rounds, drives, path)  # the round is finished once this file is written
        write_logs(cfg, split, fleet, rounds)
        if on_round is not None:
            on_round(entry)
    shutil.rmtree(Path(cfg.out) / SCRATCH_DIR, ignore_errors=True)
    return FederatedResult(path, rounds, finished=len(rounds) == cfg.rounds)
