"""The training loop both perception jobs share: AdamW, warm-up + cosine LR, clipping, resumable checkpoints.

One checkpoint file per `checkpoint_every` steps (`step-000100.safetensors`)
holds the weights (the detector under `detector.*`, so `Perception.load`
reads any of them), the optimiser and scheduler state, the random-number
state and the data position; at the end `final.safetensors` holds the
`Perception` weights and config only. Data order: epoch e visits the frame
pool in the order `randperm(seed, e)`, so the data position is a function of
the step and a resumed job sees exactly the batches an uninterrupted one
would. Augmentation seeds come from a `torch.Generator` saved in the
checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from perception.data import FrameDataset
from perception.model import Perception, PerceptionConfig
from sim.checkpoint import (
    CheckpointError,
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    restore_rng,
    rng_to_tensors,
    save_checkpoint,
)
from sim.config import ConfigError

FINAL_NAME = "final.safetensors"
_STEP_FILE = re.compile(r"^step-(\d+)\.safetensors$")
# Fields that may differ between a run and its resumption without changing the result.
_RESUMABLE_CHANGES = {"resume", "stop_at", "progress", "device", "out", "data", "init"}

LossFn = Callable[[Tensor, torch.Generator], tuple[Tensor, dict[str, Tensor]]]


def require(cond: bool, owner: str, name: str, expected: str, value: object) -> None:
    if not cond:
        raise ConfigError(f"{owner}.{name}: expected {expected}, got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """What every perception training job shares.

    Attributes:
        data: dataset directory (`perception.data.generate_dataset`).
        out: output directory for checkpoints.
        perception: the model (its detector raster must match the dataset's).
        steps: optimiser steps in the whole job.
        batch_size: frames per step.
        lr: peak learning rate (AdamW), reached after `warmup_steps`, then cosine to 0.
        weight_decay: AdamW's decoupled weight decay.
        warmup_steps: linear warm-up from 0.
        grad_clip: max global gradient norm.
        checkpoint_every: write a resumable checkpoint every this many steps (and at the end).
        seed: data order, labeled subset and augmentation seeds all derive from it.
        resume: continue from the latest checkpoint in `out` (start fresh if none).
        stop_at: stop after this global step as if killed (None: run to `steps`).
        progress: show a tqdm progress bar.
        device: torch device.
    """

    data: Path = Path("data/frames")
    out: Path = Path("runs/perception")
    perception: PerceptionConfig = PerceptionConfig()
    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 1.0
    checkpoint_every: int = 100
    seed: int = 0
    resume: bool = False
    stop_at: int | None = None
    progress: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        o = type(self).__name__
        for name in ("steps", "batch_size", "checkpoint_every"):
            value = getattr(self, name)
            require(isinstance(value, int) and value >= 1, o, name, "an int >= 1", value)
        require(isinstance(self.warmup_steps, int) and self.warmup_steps >= 0, o, "warmup_steps", "an int >= 0",
                self.warmup_steps)  # fmt: skip
        require(self.lr > 0, o, "lr", "> 0", self.lr)
        require(self.weight_decay >= 0, o, "weight_decay", ">= 0", self.weight_decay)
        require(self.grad_clip > 0, o, "grad_clip", "> 0", self.grad_clip)
        require(isinstance(self.seed, int) and self.seed >= 0, o, "seed", "an int >= 0", self.seed)
        require(self.stop_at is None or self.stop_at >= 1, o, "stop_at", "None or an int >= 1", self.stop_at)
        require(isinstance(self.perception, PerceptionConfig), o, "perception", "a PerceptionConfig", self.perception)


def jsonable(value: Any) -> Any:
    """Dataclasses, paths and tuples as plain JSON values; NaN and inf as None."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, data: Any) -> None:
    """Write JSON to `path` atomically (temporary file in the same directory, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(jsonable(data), f, indent=1)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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


def batch_index(pool: Tensor, step: int, batch_size: int, seed: int) -> Tensor:
    """[batch_size] frame indices of step `step`: positions step*B .. of the epoch-wise shuffled pool."""
    n = len(pool)
    positions = torch.arange(step * batch_size, (step + 1) * batch_size)  # (B,)
    epochs = positions // n
    out = torch.empty(batch_size, dtype=torch.long)
    for epoch in torch.unique(epochs).tolist():  # one or two epochs per batch
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        here = epochs == epoch
        out[here] = pool[order[positions[here] % n]]
    return out


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """LR factor: linear from 0 over `warmup` steps, then cosine from 1 to 0 at `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def latest_checkpoint(out: Path) -> Path | None:
    """The `step-*.safetensors` in `out` with the highest step, or None."""
    found = [(int(m.group(1)), p) for p in Path(out).glob("step-*.safetensors") if (m := _STEP_FILE.match(p.name))]
    return max(found)[1] if found else None


class Trainer:
    """Runs `loss_fn` for `cfg.steps` steps over `modules`, writing and resuming checkpoints."""

    def __init__(self, cfg: TrainConfig, kind: str, modules: nn.ModuleDict, pool: Tensor, loss_fn: LossFn):
        if len(pool) == 0:
            raise ValueError(f"{kind}: no frames to train on (check --label-fraction and the dataset)")
        self.cfg, self.kind, self.modules, self.pool, self.loss_fn = cfg, kind, modules, pool, loss_fn
        self.optimizer = torch.optim.AdamW(modules.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = LambdaLR(self.optimizer, warmup_cosine(cfg.warmup_steps, cfg.steps))
        self.augment = torch.Generator().manual_seed(cfg.seed + 1)
        self.step = 0

    def run(self) -> Path:
        """Train to `steps` (or `stop_at`); returns the final model file, or the last checkpoint when stopped."""
        out = Path(self.cfg.out)
        self._start(out)
        stop = min(self.cfg.steps, self.cfg.stop_at or self.cfg.steps)
        bar = tqdm(total=self.cfg.steps, initial=self.step, desc=self.kind, disable=not self.cfg.progress)
        last = latest_checkpoint(out)
        while self.step < stop:
            report = self._one_step()
            bar.update(1)
            bar.set_postfix(loss=f"{float(report['total']):.4f}")
            if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
                last = self._save(out / f"step-{self.step:06d}.safetensors", report)
        bar.close()
        if self.step < self.cfg.steps:
            return last if last is not None else self._save(out / f"step-{self.step:06d}.safetensors", {})
        model = Perception(self.cfg.perception)
        model.detector.load_state_dict(self.modules["detector"].state_dict())
        return model.save(out / FINAL_NAME, trained_by=self.kind, steps=self.step)

    def _one_step(self) -> dict[str, Tensor]:
        index = batch_index(self.pool, self.step, self.cfg.batch_size, self.cfg.seed)
        self.modules.train()
        loss, report = self.loss_fn(index, self.augment)
        if not torch.isfinite(loss):
            raise ValueError(f"{self.kind}: loss is not finite at step {self.step} ({report})")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.modules.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return report

    def _start(self, out: Path) -> None:
        latest = latest_checkpoint(out)
        if latest is not None and not self.cfg.resume:
            raise ValueError(f"{out} already holds checkpoints ({latest.name}); pass --resume or choose a new --out")
        if latest is not None:
            self._restore(latest)

    def _save(self, path: Path, report: dict[str, Tensor]) -> Path:
        opt_tensors, opt_rest = optimizer_to_tensors(self.optimizer.state_dict())
        tensors = {**self.modules.state_dict(), **opt_tensors, **rng_to_tensors({"augment": self.augment})}
        position = self.step * self.cfg.batch_size
        meta = {
            "kind": self.kind,
            "step": self.step,
            "epoch": position // len(self.pool),
            "epoch_position": position % len(self.pool),
            "job": jsonable(asdict(self.cfg)),
            "optimizer": jsonable(opt_rest),
            "scheduler": jsonable(self.scheduler.state_dict()),
            "losses": {name: float(value) for name, value in report.items()},
        }
        return save_checkpoint(path, tensors, self.cfg.perception.to_dict(), **meta)

    def _restore(self, path: Path) -> None:
        ckpt = load_checkpoint(path, self.cfg.device)
        if ckpt.meta.get("kind") != self.kind:
            raise CheckpointError(f"checkpoint {path}: written by {ckpt.meta.get('kind')!r}, expected {self.kind!r}")
        now = jsonable(asdict(self.cfg))
        for name, value in ckpt.meta.get("job", {}).items():
            if name == "perception":
                # Fields added to the config since the checkpoint take their defaults.
                value = jsonable(asdict(PerceptionConfig.from_dict(value)))
            if name not in _RESUMABLE_CHANGES and now.get(name) != value:
                raise ValueError(f"--resume: {name} is {now.get(name)!r} but {path.name} was trained with {value!r}")
        try:
            weights = {k: v for k, v in ckpt.tensors.items() if not k.startswith(("optimizer.", "rng."))}
            self.modules.load_state_dict(weights)
            self.optimizer.load_state_dict(optimizer_from_tensors(ckpt.tensors, ckpt.meta["optimizer"]))
            self.scheduler.load_state_dict(ckpt.meta["scheduler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path}: cannot resume from it ({exc})") from exc
        restore_rng(ckpt.tensors, {"augment": self.augment})
        self.step = int(ckpt.meta["step"])
