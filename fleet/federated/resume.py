"""The global model file: written atomically after every round with what resuming needs (the rounds so far, the
job config, each vehicle's drives and the validation drives), and read back to resume a killed run, which is
refused when the config or the drives differ (the run would otherwise go on with other data)."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import zip_longest
from pathlib import Path
from typing import Any

from torch import Tensor

from core.io import jsonable
from core.training import check_same_job
from fleet.federated.config import KIND, RESUMABLE_CHANGES, FederatedConfig
from fleet.federated.data import LogSplit
from fleet.federated.rounds import initial_weights, predictor_from
from fleet.federated.vehicles import Vehicle
from prediction.checkpoint import load_predictor, save_predictor
from prediction.config import PredictorConfig
from prediction.train import IMPLIED_JOB


def drive_lists(split: LogSplit, fleet: list[Vehicle]) -> dict[str, list]:
    """What a run trains and scores on: each vehicle's drives and the validation drives."""
    return {"vehicle_drives": [list(v.drives) for v in fleet], "validation_drives": [d.drive for d in split.validation]}


def save_global(
    weights: Mapping[str, Tensor], cfg: FederatedConfig, rounds: list[dict[str, Any]], drives: dict[str, list],
    path: Path,
) -> Path:  # fmt: skip
    """The global model after the last finished round, atomically, with the rounds log and the drive lists
    (`drive_lists`) in its metadata: the file alone is enough to resume, and to check a resumption."""
    model = predictor_from(weights, cfg)
    return save_predictor(model, path, trained_by=KIND, federated_round=len(rounds), rounds=rounds, job=jsonable(cfg),
                          **drives)  # fmt: skip


def resume_point(
    cfg: FederatedConfig, path: Path, drives: dict[str, list]
) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    """(global weights, rounds done): from the last finished round's model file, or a fresh start. Resuming
    needs today's config (but `RESUMABLE_CHANGES`) and drive lists (`drive_lists`) to be the file's."""
    if not path.exists():
        return initial_weights(cfg), []
    if not cfg.resume:
        raise ValueError(f"{cfg.out} already holds {path.name}; pass --resume or choose a new --out")
    model, meta = load_predictor(path)
    if meta.get("trained_by") != KIND:
        raise ValueError(f"--resume: {path} was written by {meta.get('trained_by')!r}, not {KIND!r}")
    check_same_job(jsonable(cfg), meta.get("job", {}), RESUMABLE_CHANGES, path.name, normalise_job, IMPLIED_JOB)
    changed = drive_changes(drives, meta)
    if changed:
        raise ValueError(f"--resume: the drives are not those {path.name} was trained on: {'; '.join(changed)} "
                         "(--logs changed since?); resume on the same drives or choose a new --out")  # fmt: skip
    weights = {name: t.detach().clone() for name, t in model.state_dict().items()}
    return weights, list(meta["rounds"])


def normalise_job(name: str, value: Any) -> Any:
    """A stored job config field in today's form: fields added to PredictorConfig since take their defaults."""
    return jsonable(PredictorConfig.from_dict(value)) if name == "predictor" else value


def drive_changes(now: dict[str, list], meta: Mapping[str, Any]) -> list[str]:
    """How today's drive lists (`drive_lists`) differ from those in a global model's metadata `meta`."""
    if "vehicle_drives" not in meta or "validation_drives" not in meta:
        return ["the file records none (written before drive lists were stored)"]
    pairs = zip_longest(now["vehicle_drives"], meta["vehicle_drives"], fillvalue=[])
    changes = [list_change(f"vehicle {number}", drives, stored) for number, (drives, stored) in enumerate(pairs)]
    changes.append(list_change("validation", now["validation_drives"], meta["validation_drives"]))
    return [change for change in changes if change]


def list_change(owner: str, now: list[str], stored: list[str]) -> str:
    """'' when equal, else what was added and removed."""
    if now == stored:
        return ""
    added, removed = [d for d in now if d not in stored], [d for d in stored if d not in now]
    return f"{owner} added {added}, removed {removed}" if added or removed else f"{owner} in another order"
