"""What both perception training jobs share: their config, their data (frames of drive logs,
`perception.logdata`) and its batching, and the `Trainer` (`core.training`) set up to write `Perception`
model files.

One checkpoint file per `checkpoint_every` steps (`step-000100.safetensors`)
holds the weights (the detector under `detector.*`, so `Perception.load`
reads any of them), the optimiser and scheduler state, the random-number
state and the data position; at the end `final.safetensors` holds the
`Perception` weights and config only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from core.config import require
from core.io import jsonable
from core.training import FINAL_NAME, LoopSettings, LossFn, Trainer
from perception.jobs.loader import BatchLoader
from perception.logdata import LogFrameDataset
from perception.model import Perception, PerceptionConfig
from sim.drivelogs.format import LogError
from sim.drivelogs.index import DriveEntry, LogIndex, build_index

# Detector inputs and next frames rounded through float16: the precision the perception datasets stored them
# in when the shipped weights were trained (`make weights`), so their recipe reads the same numbers from logs.
STORED_HALF = True


@dataclass(frozen=True)
class TrainConfig(LoopSettings):
    """What every perception training job shares: the loop's fields (`core.training.LoopSettings`; the seed
    also draws the labeled subset) and

    Attributes:
        data: a folder of drive logs (`drivestack fleet record`, `drivestack sim --record`), recorded at the
            detector's raster.
        perception: the model (its detector raster must match the logs').
        every: one frame in `every` is an item (steps 0, every, 2 every, ... of each drive).
        max_objects: M, label slots per frame (`sim.sensors.objects.pad_objects`).
        workers: processes reading the next steps' batches while the loop trains (0: read in the loop;
            `perception.jobs.loader`); the results do not depend on it.
    """

    data: Path = Path("data/drives")
    out: Path = Path("runs/perception")
    perception: PerceptionConfig = PerceptionConfig()
    every: int = 5
    max_objects: int = 64
    workers: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        require(isinstance(self.perception, PerceptionConfig), name, "perception", "a PerceptionConfig",
                self.perception)  # fmt: skip
        for field in ("every", "max_objects"):
            value = getattr(self, field)
            require(isinstance(value, int) and value >= 1, name, field, "an int >= 1", value)
        require(isinstance(self.workers, int) and self.workers >= 0, name, "workers", "an int >= 0", self.workers)


def open_logs(folder: str | Path) -> LogIndex:
    """The index of a folder of drive logs, its broken logs reported (and left out), at least one drive."""
    index = build_index(folder)
    index.warn_broken()
    if not index.drives:
        raise LogError(f"log folder {folder}: no readable drive log (record some with "
                       f"`drivestack fleet record --out {folder}`)")  # fmt: skip
    return index


def frame_dataset(
    cfg: TrainConfig, labels: bool, index: LogIndex | None = None, drives: Sequence[DriveEntry] | None = None
) -> LogFrameDataset:
    """The job's frames: every `cfg.every`-th frame of `drives` (default: every drive of `cfg.data`), built for
    the job's detector, with the labels when asked for."""
    index = open_logs(cfg.data) if index is None else index
    det = cfg.perception.detector
    return LogFrameDataset(index, index.drives if drives is None else drives, det.frames, det.raster,
                           det.warp_mode, labels=labels, max_objects=cfg.max_objects, every=cfg.every,
                           stored_half=STORED_HALF)  # fmt: skip


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


def run_reading_ahead(trainer: Trainer, loader: BatchLoader, items: Callable[[Tensor], Tensor] = lambda i: i) -> Path:
    """Run `trainer` while `loader` reads ahead what each step's loss asks for: `items(batch)` of the step's
    batch (the batch itself, or with more, e.g. pretraining's temporal partners)."""
    loader.plan(lambda step: items(trainer.batch(step)), trainer.cfg.steps)
    try:
        return trainer.run()
    finally:
        loader.close()
