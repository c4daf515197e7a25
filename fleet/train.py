"""`drivestack fleet train`: retraining a stage from drive logs, on one process or under torchrun.

    drivestack fleet train --stage pretrain --logs logs --out runs/fleet/pretrain --steps 200
    torchrun --nproc-per-node 2 -m stack.cli fleet train --stage pretrain --drive-logs logs --out runs/fleet/pretrain

(Under torchrun the folder is given as `--drive-logs`: torchrun's own parser
reads `--logs` as an abbreviation of its `--logs-specs`.) The logs are indexed
(broken logs reported and skipped), split by drive, and the training drives
feed the stage's job on the shared training loop, which is data-parallel under
torchrun (gloo on CPU, NCCL on GPU; see `sim.training`).
Stage `pretrain` is the detector's self-supervised pretraining on unlabeled
frames (`perception.jobs.pretrain`). The other stages of the issue (labeled
perception, prediction, end-to-end) are not built yet.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist

from fleet.datasets import LogFrameDataset
from fleet.index import build_index, split_drives
from perception.jobs.pretrain import PretrainConfig, pretrain
from sim.training import write_json

STAGES = ("pretrain",)
MANIFEST = "drives.json"


def init_distributed() -> tuple[int, int]:
    """(rank, world) under torchrun (read from its environment), after joining its process group:
    NCCL when CUDA is available, else gloo. (0, 1) for a plain process."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def train_pretrain(logs: Path, cfg: PretrainConfig, val_fraction: float) -> Path:
    """Self-supervised pretraining on the training drives of `logs`; rank 0 writes `drives.json`
    (the manifest of the logs the model saw, and the held-out drives) beside the checkpoints."""
    rank, _ = init_distributed()
    index = build_index(logs, save=rank == 0)
    train, val = split_drives(index.drives, val_fraction)
    det = cfg.perception.detector
    dataset = LogFrameDataset(index, train, det.frames, det.raster, det.warp_mode)
    if rank == 0:
        manifest = {
            "logs": str(logs),
            "train": [{"drive": d.drive, "file": d.file, "size": d.size, "frames": d.frames} for d in train],
            "validation": [d.drive for d in val],
            "broken": index.broken,
        }
        write_json(Path(cfg.out) / MANIFEST, manifest)
    return pretrain(cfg, dataset)
