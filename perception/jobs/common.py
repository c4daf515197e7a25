"""What both perception training jobs share: their config, dataset opening and batching, and the
`Trainer` (`core.training`) set up to write `Perception` model files.

One checkpoint file per `checkpoint_every` steps (`step-000100.safetensors`)
holds the weights (the detector under `detector.*`, so `Perception.load`
reads any of them), the optimiser and scheduler state, the random-number
state and the data position; at the end `final.safetensors` holds the
`Perception` weights and config only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from core.config import require
from core.io import jsonable
from core.training import FINAL_NAME, LoopSettings, LossFn, Trainer
from perception.data import FrameDataset
from perception.model import Perception, PerceptionConfig


@dataclass(frozen=True)
class TrainConfig(LoopSettings):
    """What every perception training job shares: the loop's fields (`core.training.LoopSettings`; the seed
    also draws the labeled subset) and

    Attributes:
        data: dataset directory (`perception.data.generate_dataset`).
        perception: the model (its detector raster must match the dataset's).
    """

    data: Path = Path("data/frames")
    out: Path = Path("runs/perception")
    perception: PerceptionConfig = PerceptionConfig()

    def __post_init__(self) -> None:
        super().__post_init__()
        require(isinstance(self.perception, PerceptionConfig), type(self).__name__, "perception", "a PerceptionConfig",
                self.perception)  # fmt: skip


def open_dataset(cfg: TrainConfig) -> FrameDataset:
    """The job's dataset, checked against the detector's input settings."""
    if not (Path(cfg.data) / "index.json").is_file():
        raise FileNotFoundError(
            f"dataset {cfg.data}: no index.json (generate one with `drivestack perception generate`)"
        )
    dataset = FrameDataset(cfg.data)
    det = cfg.perception.detector
    dataset.check_compatible(det.frames, det.raster, det.warp_mode)
    return dataset


def load_batch(dataset: FrameDataset, index: Tensor, device: str) -> dict[str, Tensor]:
    """Frames `index [B]` stacked into one batch dict (see `FrameDataset`)."""
    items = [dataset[int(i)] for i in index]
    return {name: torch.stack([item[name] for item in items]).to(device) for name in items[0]}


def perception_trainer(cfg: TrainConfig, kind: str, modules: nn.ModuleDict, pool: Tensor, loss_fn: LossFn) -> Trainer:
    """A `Trainer` whose checkpoints carry the `PerceptionConfig` and whose final file is a `Perception`."""
    if len(pool) == 0:
        raise ValueError(f"{kind}: no frames to train on (check --label-fraction and the dataset)")

    def finalize(steps: int, seconds: float) -> Path:
        model = Perception(cfg.perception)
        model.detector.load_state_dict(modules["detector"].state_dict())
        return model.save(Path(cfg.out) / FINAL_NAME, trained_by=kind, steps=steps, train_seconds=seconds)

    def normalise_job(name: str, value: Any) -> Any:
        # Fields added to PerceptionConfig since the checkpoint take their defaults.
        return jsonable(asdict(PerceptionConfig.from_dict(value))) if name == "perception" else value

    return Trainer(cfg, kind, modules, pool, loss_fn, cfg.perception.to_dict(), finalize, normalise_job)
