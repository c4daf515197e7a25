"""`drivestack fleet train`: retraining a stage from drive logs, on one process or under torchrun.

    drivestack fleet train --stage pretrain --logs logs --out runs/fleet/pretrain --steps 200
    torchrun --nproc-per-node 2 -m stack.cli fleet train --stage pretrain --drive-logs logs --out runs/fleet/pretrain

(Under torchrun the folder is given as `--drive-logs`: torchrun's own parser
reads `--logs` as an abbreviation of its `--logs-specs`.) The logs are indexed
(broken logs reported and skipped), split by drive, and the training drives
feed the stage's job on the shared training loop, which is data-parallel under
torchrun (gloo on CPU, NCCL on GPU; see `core.training`). Each stage reads what
it needs from the logs:

    pretrain     unlabeled frames: the detector's self-supervised pretraining (`perception.jobs.pretrain`)
    perception   frames with their labels (`/agents/labels`), a `label_fraction` of them: supervised
                 detector training (`perception.jobs.finetune`), from a pretrained checkpoint or scratch
    prediction   the true agent tracks (`/agents/truth`, `/ego/state`) cut into windows in the ego frame of
                 each window's present: the predictor's ELBO (`prediction.train`)
    end2end      the frames the expert saw, its own trajectory and the true agents: the stack's planning
                 loss (`stack.train`), from a stack checkpoint

Rank 0 writes `drives.json` beside the checkpoints: the drives the model saw
(name, file, size, frames), the ones held out, and the logs skipped as broken:
unreadable at indexing, or damaged in a way only reading them shows (a missing
channel, dropped frames), which each stage checks before training starts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.config import Timing
from core.distributed import join_process_group
from core.io import write_json
from core.training import FINAL_NAME
from perception.jobs.common import frame_dataset
from perception.jobs.finetune import FinetuneConfig, finetune
from perception.jobs.pretrain import PretrainConfig, pretrain
from prediction.logwindows import concat_windows, drive_windows
from prediction.train import PredictionTrainConfig
from prediction.train import train as train_predictor
from sim.drivelogs.format import LABELS_TOPIC, LogError
from sim.drivelogs.index import DriveEntry, LogIndex, build_index, read_each, split_drives
from sim.drivelogs.series import read_series
from stack.episodes import RecordedBatch, recorded_drive
from stack.policy import stack_weights
from stack.train import EndToEndConfig, held_out_loss
from stack.train import train as train_stack

log = logging.getLogger(__name__)

STAGES = ("pretrain", "perception", "prediction", "end2end")
VALIDATION = "validation.json"
MANIFEST = "drives.json"


def training_drives(logs: Path, out: Path, val_fraction: float) -> tuple[LogIndex, list[DriveEntry]]:
    """Index `logs` (rank 0 saves the index), split by drive, and (rank 0) write the manifest to `out`."""
    rank, _ = join_process_group()
    index = build_index(logs, save=rank == 0)
    index.warn_broken()
    train, val = split_drives(index.drives, val_fraction)
    if not train:
        raise LogError(f"log folder {logs}: no training drives ({len(index.drives)} readable, "
                       f"{len(val)} held out by --val-fraction {val_fraction})")  # fmt: skip
    if rank == 0:
        write_json(Path(out) / MANIFEST, drive_manifest(logs, train, val, index.broken))
    return index, train


def drive_manifest(
    logs: str | Path, train: Sequence[DriveEntry], val: Sequence[DriveEntry], broken: Mapping[str, str]
) -> dict[str, Any]:
    """`drives.json`: the drives a model saw (name, file, size, frames), the ones held out, and the logs skipped
    as broken (file name: error)."""
    return {
        "logs": str(logs),
        "train": [{"drive": d.drive, "file": d.file, "size": d.size, "frames": d.frames} for d in train],
        "validation": [d.drive for d in val],
        "broken": dict(broken),
    }


def train_pretrain(logs: Path, cfg: PretrainConfig, val_fraction: float) -> Path:
    """Self-supervised pretraining on the unlabeled frames of the training drives."""
    index, train = training_drives(logs, cfg.out, val_fraction)
    return pretrain(cfg, frame_dataset(cfg, labels=False, index=index, drives=train))


def train_perception(logs: Path, cfg: FinetuneConfig, val_fraction: float) -> Path:
    """Supervised detector training on the labeled frames (`cfg.label_fraction`) of the training drives."""
    index, train = training_drives(logs, cfg.out, val_fraction)

    def labeled(entry: DriveEntry) -> DriveEntry:  # one label message per frame, found before training starts
        read_series(index.path(entry), entry.frames, (LABELS_TOPIC,))
        return entry

    train, damaged = read_each(index, train, labeled)
    report_damaged(cfg.out, damaged)
    if not train:
        raise LogError(f"log folder {logs}: no training drive holds labels ({sorted(damaged)})")
    return finetune(cfg, frame_dataset(cfg, labels=True, index=index, drives=train))


def report_damaged(out: Path, damaged: dict[str, str]) -> None:
    """Move drives found damaged while reading from the manifest's training drives to its broken logs."""
    if not damaged or join_process_group()[0] != 0:
        return
    manifest = json.loads((Path(out) / MANIFEST).read_text())
    manifest["train"] = [d for d in manifest["train"] if d["file"] not in damaged]
    manifest["broken"].update(damaged)
    write_json(Path(out) / MANIFEST, manifest)


def train_prediction(logs: Path, cfg: PredictionTrainConfig, val_fraction: float) -> Path:
    """The predictor's ELBO on windows of the true agent tracks of the training drives."""
    index, train = training_drives(logs, cfg.out, val_fraction)
    parts, damaged = read_each(index, train, lambda entry: drive_windows(index, entry))
    report_damaged(cfg.out, damaged)
    return train_predictor(cfg, concat_windows(index, [w for w in parts if w is not None]))


def train_end2end(logs: Path, cfg: EndToEndConfig, val_fraction: float) -> Path:
    """The stack's planning loss on the expert drives of the training drives; then (rank 0) the same loss of the
    starting and the trained stack on the held-out drives, in `validation.json`."""
    cfg = replace(cfg, weights=stack_weights(cfg.weights))
    index, train = training_drives(logs, cfg.out, val_fraction)

    def read(entry: DriveEntry) -> RecordedBatch:
        return recorded_drive(index, entry, Timing())

    recorded, damaged = read_each(index, train, read)
    report_damaged(cfg.out, damaged)
    if not recorded:
        raise LogError(f"log folder {logs}: every training drive is damaged ({sorted(damaged)})")
    final = train_stack(cfg, recorded)
    _, held_out = split_drives(index.drives, val_fraction)
    if final.name == FINAL_NAME and held_out and join_process_group()[0] == 0:
        validate_end2end(cfg, final, read_each(index, held_out, read)[0], [d.drive for d in held_out])
    return final


def validate_end2end(cfg: EndToEndConfig, final: Path, held_out: list[RecordedBatch], drives: list[str]) -> None:
    """`validation.json`: the planning loss of the starting and the trained stack on the held-out drives (what
    fine-tuning did to the job's own objective on drives it did not see; the closed-loop gate judges driving)."""
    try:
        report = {"drives": drives, "start": held_out_loss(cfg.weights, held_out, cfg),
                  "trained": held_out_loss(final, held_out, cfg)}  # fmt: skip
    except ValueError as exc:  # held-out drives too short for one warm-up plus a horizon
        log.warning("no end-to-end validation: %s", exc)
        return
    write_json(Path(cfg.out) / VALIDATION, report)
