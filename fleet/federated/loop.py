"""The federated loop: rounds of local runs and the server's average, the global model saved after every round,
and resuming a killed run from its last finished round (it then ends as one that ran through)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from fleet.federated.config import GLOBAL_NAME, KIND, RESUMABLE_CHANGES, ROUNDS_NAME, SCRATCH_DIR, FederatedConfig
from fleet.federated.data import LogSplit, read_split
from fleet.federated.rounds import initial_weights, local_round, predictor_from, validation_scores
from fleet.federated.server import average_weights
from fleet.federated.vehicles import Vehicle, make_fleet
from fleet.train import MANIFEST
from prediction.checkpoint import load_predictor, save_predictor
from prediction.config import PredictorConfig
from sim.training import jsonable, write_json


def resume_point(cfg: FederatedConfig, path: Path) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    """(global weights, rounds done): from the last finished round's model file, or a fresh start."""
    if not path.exists():
        return initial_weights(cfg), []
    if not cfg.resume:
        raise ValueError(f"{cfg.out} already holds {path.name}; pass --resume or choose a new --out")
    model, meta = load_predictor(path)
    if meta.get("trained_by") != KIND:
        raise ValueError(f"--resume: {path} was written by {meta.get('trained_by')!r}, not {KIND!r}")
    now = jsonable(cfg)
    for name, value in meta.get("job", {}).items():
        if name == "predictor":  # fields added to PredictorConfig since take their defaults
            value = jsonable(PredictorConfig.from_dict(value))
        if name not in RESUMABLE_CHANGES and now.get(name) != value:
            raise ValueError(f"--resume: {name} is {now.get(name)!r} but {path.name} was trained with {value!r}")
    weights = {name: t.detach().clone() for name, t in model.state_dict().items()}
    return weights, list(meta["rounds"])


def save_global(weights: Mapping[str, Tensor], cfg: FederatedConfig, rounds: list[dict[str, Any]], path: Path) -> Path:
    """The global model after the last finished round, atomically, the rounds log in its metadata (so the file
    alone is enough to resume)."""
    model = predictor_from(weights, cfg)
    return save_predictor(model, path, trained_by=KIND, federated_round=len(rounds), rounds=rounds, job=jsonable(cfg))


def write_logs(cfg: FederatedConfig, split: LogSplit, fleet: list[Vehicle], rounds: list[dict[str, Any]]) -> None:
    """`drives.json` (the manifest `fleet train` writes, plus each vehicle's drives) and `rounds.json`."""
    out = Path(cfg.out)
    vehicles = [{"vehicle": v.number, "drives": list(v.drives), "samples": v.samples} for v in fleet]
    manifest = {
        "logs": str(split.index.root),
        "train": [{"drive": d.drive, "file": d.file, "size": d.size, "frames": d.frames} for d in split.train],
        "validation": [d.drive for d in split.validation],
        "broken": split.index.broken,
        "vehicles": [list(v.drives) for v in fleet],
    }
    write_json(out / MANIFEST, manifest)
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
    weights, rounds = resume_point(cfg, path)
    write_logs(cfg, split, fleet, rounds)
    for number in range(len(rounds) + 1, cfg.last_round + 1):
        start = time.perf_counter()
        local = [local_round(weights, vehicle, cfg, number, Path(cfg.out) / SCRATCH_DIR) for vehicle in fleet]
        weights = average_weights([w for w, _ in local], [vehicle.samples for vehicle in fleet])
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
        save_global(weights, cfg, rounds, path)  # the round is finished once this file is written
        write_logs(cfg, split, fleet, rounds)
        if on_round is not None:
            on_round(entry)
    shutil.rmtree(Path(cfg.out) / SCRATCH_DIR, ignore_errors=True)
    return FederatedResult(path, rounds, finished=len(rounds) == cfg.rounds)
