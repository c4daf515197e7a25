"""The training loop every drivestack job shares: AdamW, warm-up + cosine LR, clipping, resumable checkpoints.

One checkpoint file per `checkpoint_every` steps (`step-000100.safetensors`)
holds the trained modules' weights, the optimiser and scheduler state, the
random-number state and the data position; at the end the job's own
`finalize` writes the model file (`final.safetensors`). Data order: epoch e
visits the item pool in the order `randperm(seed, e)`, so the data position is
a function of the step and a resumed job sees exactly the batches an
uninterrupted one would. Augmentation seeds come from a `torch.Generator`
saved in the checkpoint.

A job's config is a frozen dataclass with the `LoopSettings` fields (out,
steps, batch_size, lr, weight_decay, warmup_steps, grad_clip, checkpoint_every,
seed, resume, stop_at, progress, device, amp, wandb); the jobs' configs
subclass `LoopSettings`. Rank 0 also logs every loss term and the learning rate
per step to TensorBoard (`out/tensorboard`) and, when asked for, to Weights &
Biases (`core.train_logging`).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm

from core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    restore_rng,
    rng_to_tensors,
    save_checkpoint,
)
from core.config import FOLDER_OR_ABSENT, is_folder_or_absent, require
from core.distributed import barrier, process_group
from core.io import jsonable
from core.train_logging import MetricSinks

FINAL_NAME = "final.safetensors"
_STEP_FILE = re.compile(r"^step-(\d+)\.safetensors$")
# Fields that may differ between a run and its resumption without changing the result.
RESUMABLE_CHANGES = frozenset({"resume", "stop_at", "progress", "device", "out", "data", "init", "wandb", "workers"})

LossFn = Callable[[Tensor, torch.Generator, int], tuple[Tensor, dict[str, Tensor]]]


@dataclass(frozen=True)
class LoopSettings:
    """The fields every job on the loop has; a job's config subclasses it, adds its own fields and
    redeclares the defaults it changes (a redeclared field keeps its place, so it needs only a new default).

    Attributes:
        out: output directory for checkpoints, the final model and the logs.
        steps: optimiser steps in the whole job.
        batch_size: items per step (per process under torchrun).
        lr: peak learning rate (AdamW), reached after `warmup_steps`, then cosine to 0.
        weight_decay: AdamW's decoupled weight decay.
        warmup_steps: linear warm-up from 0.
        grad_clip: max global gradient norm.
        checkpoint_every: write a resumable checkpoint every this many steps (and at the end).
        seed: data order and augmentation seeds derive from it.
        resume: continue from the latest checkpoint in `out` (start fresh if none).
        stop_at: stop after this global step as if killed (None: run to `steps`).
        progress: show a tqdm progress bar.
        device: torch device.
        amp: mixed precision (bf16 autocast) on a CUDA device.
        wandb: a Weights & Biases project to log to as well (None: TensorBoard only).
    """

    out: Path = Path("runs/train")
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
    amp: bool = False
    wandb: str | None = None

    def __post_init__(self) -> None:
        check_loop_settings(self)


def check_loop_settings(cfg: Any) -> None:
    """Validate the loop fields every job config shares; errors name the field."""
    o = type(cfg).__name__
    for name in ("steps", "batch_size", "checkpoint_every"):
        value = getattr(cfg, name)
        require(isinstance(value, int) and value >= 1, o, name, "an int >= 1", value)
    require(isinstance(cfg.warmup_steps, int) and cfg.warmup_steps >= 0, o, "warmup_steps", "an int >= 0",
            cfg.warmup_steps)  # fmt: skip
    require(cfg.lr > 0, o, "lr", "> 0", cfg.lr)
    require(cfg.weight_decay >= 0, o, "weight_decay", ">= 0", cfg.weight_decay)
    require(cfg.grad_clip > 0, o, "grad_clip", "> 0", cfg.grad_clip)
    require(isinstance(cfg.seed, int) and cfg.seed >= 0, o, "seed", "an int >= 0", cfg.seed)
    require(cfg.stop_at is None or cfg.stop_at >= 1, o, "stop_at", "None or an int >= 1", cfg.stop_at)
    require(is_folder_or_absent(cfg.out), o, "out", FOLDER_OR_ABSENT, str(cfg.out))
    require(not cfg.amp or str(cfg.device).startswith("cuda"), o, "amp", "False on a CPU (bf16 autocast is for CUDA)",
            cfg.amp)  # fmt: skip
    project = getattr(cfg, "wandb", None)
    require(project is None or (isinstance(project, str) and project.strip() != ""), o, "wandb",
            "None or a W&B project name", project)  # fmt: skip


def check_same_job(
    now: Mapping[str, Any],
    stored: Mapping[str, Any],
    resumable: Collection[str],
    source: str,
    normalise: Callable[[str, Any], Any],
    implied: Mapping[str, Any] | None = None,
) -> None:
    """Refuse to resume (ValueError naming the field) when a field of the job config `stored` in the file `source`
    differs from today's `now` (both JSON-able dicts); `resumable` fields may differ, `normalise` maps a stored
    (name, value) to today's form, `implied` gives the value a stored job meant by a field it lacks (one added
    since whose default is not what older jobs did)."""
    stored = {**(implied or {}), **stored}
    for name, value in stored.items():
        value = normalise(name, value)
        if name not in resumable and now.get(name) != value:
            raise ValueError(f"--resume: {name} is {now.get(name)!r} but {source} was trained with {value!r}")


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
    """Runs `loss_fn` for `cfg.steps` steps over `modules`, writing and resuming checkpoints.

    Args:
        cfg: the job config (see the module docstring); stored in every checkpoint.
        kind: the job's name; a checkpoint of another kind is refused on resume.
        modules: what is trained (its state dict is checkpointed).
        pool: [P] long, the items (frames, windows) a step draws its batch from.
        loss_fn: (batch item indices, augmentation generator, step) -> (loss, report).
        model_config: the model's config as a JSON-able dict, stored with every checkpoint.
        finalize: (steps done, training seconds) -> path of the model file written at the end;
            the seconds add up every session of a resumed job.
        normalise_job: maps a stored job config field (name, value) to today's form, so
            fields added to a nested config since the checkpoint take their defaults.
        implied_job: what a stored job config meant by fields it lacks (`check_same_job`).
    """

    def __init__(
        self,
        cfg: Any,
        kind: str,
        modules: nn.ModuleDict,
        pool: Tensor,
        loss_fn: LossFn,
        model_config: dict[str, Any],
        finalize: Callable[[int, float], Path],
        normalise_job: Callable[[str, Any], Any] | None = None,
        implied_job: Mapping[str, Any] | None = None,
    ):
        if len(pool) == 0:
            raise ValueError(f"{kind}: nothing to train on (the item pool is empty)")
        self.cfg, self.kind, self.modules, self.pool, self.loss_fn = cfg, kind, modules, pool, loss_fn
        self.model_config, self.finalize = model_config, finalize
        self.normalise_job = normalise_job or (lambda name, value: value)
        self.implied_job = implied_job
        self.rank, self.world = process_group()
        # Several processes (torchrun): each computes its share of the global batch of batch_size x world
        # items, and DistributedDataParallel averages the gradients, so N processes take the steps one
        # process would take with the combined batch. The loss function runs as the wrapped module's
        # forward, which is what DDP's gradient hooks need.
        self.forward = _LossModule(modules, loss_fn)
        if self.world > 1:
            self.forward = DistributedDataParallel(self.forward, find_unused_parameters=True)
        self.optimizer = torch.optim.AdamW(modules.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = LambdaLR(self.optimizer, warmup_cosine(cfg.warmup_steps, cfg.steps))
        self.augment = torch.Generator().manual_seed(cfg.seed + 1)
        self.step = 0
        self.seconds_before = 0.0  # training time of earlier sessions of a resumed job
        self.session_start = time.perf_counter()

    def run(self) -> Path:
        """Train to `steps` (or `stop_at`); returns the final model file, or the last checkpoint when stopped."""
        out = Path(self.cfg.out)
        self.session_start = time.perf_counter()
        self._start(out)
        stop = min(self.cfg.steps, self.cfg.stop_at or self.cfg.steps)
        bar = tqdm(total=self.cfg.steps, initial=self.step, desc=self.kind, disable=not self.cfg.progress)
        last = latest_checkpoint(out)
        sinks = MetricSinks(out, self.rank, getattr(self.cfg, "wandb", None), jsonable(asdict(self.cfg)))
        while self.step < stop:
            report = self._one_step()
            bar.update(1)
            bar.set_postfix(loss=f"{float(report['total']):.4f}")
            scalars = {f"{self.kind}/{name}": float(value) for name, value in report.items()}
            sinks.log(self.step, {**scalars, f"{self.kind}/lr": self.scheduler.get_last_lr()[0]})
            if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
                last = self._save(out / f"step-{self.step:06d}.safetensors", report)
        bar.close()
        sinks.close()
        if self.step < self.cfg.steps:
            stopped = last if last is not None else self._save(out / f"step-{self.step:06d}.safetensors", {})
            barrier(self.world)  # every rank leaves together: a rank tearing down early aborts its peers
            return stopped
        final = self.finalize(self.step, self.seconds) if self.rank == 0 else out / FINAL_NAME
        barrier(self.world)
        return final

    def batch(self, step: int) -> Tensor:
        """[batch_size] the pool items this process trains on at `step` (its share of the global batch)."""
        size = self.cfg.batch_size
        return batch_index(self.pool, step, size * self.world, self.cfg.seed)[self.rank * size :][:size]

    def _one_step(self) -> dict[str, Tensor]:
        index = self.batch(self.step)
        self.modules.train()
        # Mixed precision on CUDA: bf16 autocast (fp32 range, so no loss scaling); weights and optimiser stay fp32.
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cfg.amp):
            loss, report = self.forward(index, self.augment, self.step)
        loss = loss.float()
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

    @property
    def seconds(self) -> float:
        """Wall-clock training time so far, s, over every session of the job."""
        return self.seconds_before + time.perf_counter() - self.session_start

    def _save(self, path: Path, report: dict[str, Tensor]) -> Path:
        """Rank 0 writes (every rank holds the same weights); the others wait until the file exists."""
        if self.rank == 0:
            self._write(path, report)
        barrier(self.world)
        return path

    def _write(self, path: Path, report: dict[str, Tensor]) -> Path:
        opt_tensors, opt_rest = optimizer_to_tensors(self.optimizer.state_dict())
        tensors = {**self.modules.state_dict(), **opt_tensors, **rng_to_tensors({"augment": self.augment})}
        position = self.step * self.cfg.batch_size * self.world
        meta = {
            "step": self.step,
            "epoch": position // len(self.pool),
            "epoch_position": position % len(self.pool),
            "job": jsonable(asdict(self.cfg)),
            "optimizer": jsonable(opt_rest),
            "scheduler": jsonable(self.scheduler.state_dict()),
            "losses": {name: float(value) for name, value in report.items()},
            "train_seconds": self.seconds,
        }
        return save_checkpoint(path, tensors, self.model_config, trained_by=self.kind, **meta)

    def _restore(self, path: Path) -> None:
        ckpt = load_checkpoint(path, self.cfg.device)
        if ckpt.trained_by != self.kind:
            raise CheckpointError(f"checkpoint {path}: written by {ckpt.trained_by!r}, expected {self.kind!r}")
        check_same_job(jsonable(asdict(self.cfg)), ckpt.meta.get("job", {}), RESUMABLE_CHANGES, path.name,
                       self.normalise_job, self.implied_job)  # fmt: skip
        try:
            weights = {k: v for k, v in ckpt.tensors.items() if not k.startswith(("optimizer.", "rng."))}
            self.modules.load_state_dict(weights)
            self.optimizer.load_state_dict(optimizer_from_tensors(ckpt.tensors, ckpt.meta["optimizer"]))
            self.scheduler.load_state_dict(ckpt.meta["scheduler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path}: cannot resume from it ({exc})") from exc
        restore_rng(ckpt.tensors, {"augment": self.augment})
        self.step = int(ckpt.meta["step"])
        self.seconds_before = float(ckpt.meta.get("train_seconds", 0.0))


class _LossModule(nn.Module):
    """The loss function as a module's forward over the trained modules (what DDP wraps)."""

    def __init__(self, modules: nn.ModuleDict, loss_fn: LossFn):
        super().__init__()
        self.trained, self.loss_fn = modules, loss_fn

    def forward(self, index: Tensor, generator: torch.Generator, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        return self.loss_fn(index, generator, step)


def add_loop_arguments(
    parser: Any,
    steps: int | None,
    batch_size: int | None,
    lr: float | None,
    warmup_steps: int | None,
    checkpoint_every: int | None,
    items: str,
) -> None:
    """The command-line options of the shared training loop (`loop_fields` reads them back). A default
    of None leaves the field to the job config's own default (commands that run several kinds of job)."""

    def default(value: Any) -> str:
        return "the job's" if value is None else f"{value:g}"

    parser.add_argument("--steps", type=int, default=steps, help=f"optimiser steps (default {default(steps)})")
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help=f"{items} per step (default {default(batch_size)})")  # fmt: skip
    parser.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default {default(lr)})")
    parser.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay (default the job's)")
    parser.add_argument("--warmup-steps", type=int, default=warmup_steps,
                        help=f"linear LR warm-up steps (default {default(warmup_steps)})")  # fmt: skip
    parser.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (default 1.0)")
    parser.add_argument("--checkpoint-every", type=int, default=checkpoint_every,
                        help=f"checkpoint period, steps (default {default(checkpoint_every)})")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of data order and augmentation")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    parser.add_argument("--stop-at", type=int, default=None, help="stop after this step (resume later)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--amp", action="store_true", help="mixed precision (bf16 autocast) on a CUDA device")
    parser.add_argument("--wandb", metavar="PROJECT", help="also log to this Weights & Biases project (needs wandb)")


def loop_fields(args: Any) -> dict[str, Any]:
    """The job-config fields set by `add_loop_arguments`' options (those left at None are not set)."""
    fields = dict(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        grad_clip=args.grad_clip,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
        resume=args.resume,
        stop_at=args.stop_at,
        progress=not args.no_progress,
        device=args.device,
        amp=args.amp,
        wandb=args.wandb,
    )
    return {name: value for name, value in fields.items() if value is not None or name == "stop_at"}
