"""`finetune(cfg)`: supervised detector training on the labeled fraction of a dataset.

Only frames chosen by `labeled_mask(len(dataset), label_fraction, seed)` are
drawn; the detector starts from a pretrain (or any perception) checkpoint's
weights, or from scratch. With `init`, the model config comes from that
checkpoint, so the weights always fit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from core.checkpoint import load_model_checkpoint
from core.config import require
from perception.data import labeled_mask, labels_of
from perception.detector import Detector
from perception.jobs.common import TrainConfig, frame_dataset, perception_trainer, run_reading_ahead
from perception.jobs.loader import BatchLoader
from perception.logdata import LogFrameDataset
from perception.losses import LossConfig, make_targets, supervised_loss
from perception.model import CHECKPOINT_KIND, Perception, PerceptionConfig

KIND = "finetune"


@dataclass(frozen=True)
class FinetuneConfig(TrainConfig):
    """`TrainConfig` plus the labels used.

    Attributes:
        label_fraction: fraction of the dataset's frames whose labels may be used, in (0, 1].
        init: checkpoint whose `detector.*` weights and config start the job (None: from scratch).
        loss: the supervised loss's settings.
    """

    out: Path = Path("runs/perception/finetune")
    label_fraction: float = 1.0
    init: Path | None = None
    loss: LossConfig = LossConfig()

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0 < self.label_fraction <= 1, "FinetuneConfig", "label_fraction", "in (0, 1]", self.label_fraction)


def _initial_weights(cfg: FinetuneConfig) -> tuple[PerceptionConfig, dict[str, Tensor] | None]:
    if cfg.init is None:
        return cfg.perception, None
    ckpt, perception = load_model_checkpoint(cfg.init, CHECKPOINT_KIND, PerceptionConfig)
    return perception, ckpt.tensors


def finetune(cfg: FinetuneConfig, dataset: LogFrameDataset | None = None) -> Path:
    """Run (or resume) the job; returns `final.safetensors` (or the last checkpoint when stopped early).
    `dataset` replaces every frame of `cfg.data` (e.g. the training split of a folder, `fleet.train`); its
    items must carry "labels.<field>"."""
    perception, init_tensors = _initial_weights(cfg)
    cfg = replace(cfg, perception=perception)
    det = perception.detector
    if dataset is None:
        dataset = frame_dataset(cfg, labels=True)
    else:
        dataset.check_compatible(det.frames, det.raster, det.warp_mode)
    torch.manual_seed(cfg.seed)  # initial weights
    detector = Detector(det)
    if init_tensors is not None:
        start = Perception(perception)
        start.load_weights(init_tensors, str(cfg.init))
        detector.load_state_dict(start.detector.state_dict())
    modules = nn.ModuleDict({"detector": detector}).to(cfg.device)
    loader = BatchLoader(dataset, cfg.workers)

    def loss_fn(index: Tensor, augment: torch.Generator, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        batch = loader.load(step, index, cfg.device)
        targets = make_targets(labels_of(batch), det.raster, det.stride, cfg.loss)
        out = modules["detector"](batch["input"])
        return supervised_loss(out, targets, det.raster, det.stride, cfg=cfg.loss)

    pool = torch.nonzero(labeled_mask(len(dataset), cfg.label_fraction, cfg.seed)).flatten()
    return run_reading_ahead(perception_trainer(cfg, KIND, modules, pool, loss_fn), loader)


def main(cfg: FinetuneConfig) -> Path:
    return finetune(cfg)
