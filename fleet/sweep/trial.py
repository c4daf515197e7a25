"""One trial: the windows it trains and is scored on, its training rung by rung, and the objective a worker
hands Optuna."""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import optuna

from fleet.sweep.settings import OBJECTIVE, SweepSettings
from fleet.sweep.space import Dimension, apply_params, suggest_params
from prediction import api
from prediction.config import PredictorConfig
from prediction.evaluate import evaluate_scene
from prediction.logwindows import log_windows
from prediction.train import PredictionTrainConfig
from prediction.train import train as train_predictor
from prediction.windows import TrajectoryWindows
from sim.drivelogs.format import LogError
from sim.drivelogs.index import build_index, split_drives


# -- data ----------------------------------------------------------------------------------------------------
@dataclass
class SweepData:
    """The windows of one worker: `train` from the training drives, `validation` from the held-out ones."""

    train: TrajectoryWindows
    validation: TrajectoryWindows


def no_validation_error(settings: SweepSettings, drives: int) -> LogError:
    return LogError(
        f"log folder {settings.logs}: no validation drives: --val-fraction {settings.val_fraction} holds out none "
        f"of its {drives} drives (drives are held out by a hash of their name, so a small fraction of few drives "
        f"may hold out none); raise --val-fraction or record more drives"
    )


def check_split(settings: SweepSettings) -> tuple[list[str], list[str]]:
    """The names of the training and validation drives; fails before anything is written or trained when the
    logs give no validation or no training drive."""
    index = build_index(settings.logs)
    train, validation = split_drives(index.drives, settings.val_fraction)
    if not validation:
        raise no_validation_error(settings, len(index.drives))
    if not train:
        raise LogError(f"log folder {settings.logs}: no training drives: --val-fraction {settings.val_fraction} "
                       f"holds out all {len(index.drives)} drives; lower it or record more drives")  # fmt: skip
    return [d.drive for d in train], [d.drive for d in validation]


def load_data(settings: SweepSettings) -> SweepData:
    """The windows of both splits, cut once per worker (every trial reuses them)."""
    index = build_index(settings.logs, save=False)
    train, validation = split_drives(index.drives, settings.val_fraction)
    if not validation:
        raise no_validation_error(settings, len(index.drives))
    try:
        held_out = log_windows(index, validation)
    except LogError as exc:
        raise LogError(f"validation drives of {settings.logs}: {exc}") from exc
    if not bool(held_out.scored().any()):
        raise LogError(f"validation drives of {settings.logs}: no agent is seen over a whole window, nothing "
                       f"to score the trials on; raise --val-fraction or record longer drives")  # fmt: skip
    return SweepData(log_windows(index, train), held_out)


# -- one trial -----------------------------------------------------------------------------------------------
def trial_folder(out: Path, number: int) -> Path:
    return Path(out) / f"trial-{number:04d}"


def base_config(settings: SweepSettings, out: Path) -> PredictionTrainConfig:
    """A trial's job before its sampled values. The warm-up is capped to the trial's budget (the job's
    defaults are sized for 3000 steps); every trial trains with the same seed, so trials differ by their
    values, not their data order."""
    defaults = PredictionTrainConfig()
    return PredictionTrainConfig(
        out=out,
        predictor=PredictorConfig.tiny() if settings.predictor == "tiny" else PredictorConfig(),
        steps=settings.steps,
        checkpoint_every=settings.min_steps,  # every rung is a multiple of it: each segment ends on a checkpoint
        warmup_steps=min(defaults.warmup_steps, settings.steps // 10),
        # KL annealed within the first rung (beta = 0.99 kl_weight there): the first pruning decision sees the
        # searched kl_weight and kl_min at full strength (annealed over steps // 2, it saw 6% of kl_weight at
        # the defaults' first rung). Annealed, not constant (kl_anneal_steps=0), as the job trains: the KL
        # does not dominate the first, untrained steps.
        kl_anneal_steps=min(defaults.kl_anneal_steps, settings.min_steps),
        seed=settings.seed,
        progress=False,
        device=settings.device,
    )


def score(checkpoint: Path, windows: TrajectoryWindows, device: str) -> dict[str, float]:
    """Averaged metrics of the model in `checkpoint` over the scored agents of `windows` (no KDE: slow)."""
    scores = evaluate_scene(api.load(checkpoint, device), windows, kde_samples=0)
    if not math.isfinite(scores[OBJECTIVE]):
        raise ValueError(f"checkpoint {checkpoint}: validation {OBJECTIVE} is not finite ({scores[OBJECTIVE]})")
    return scores


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def train_and_score(
    trial: optuna.Trial, settings: SweepSettings, data: SweepData, space: dict[str, Dimension]
) -> float:
    """Train the trial rung by rung, report each rung's validation score, and stop when the pruner says so."""
    cfg = apply_params(base_config(settings, trial_folder(settings.out, trial.number)), suggest_params(trial, space))
    value = math.nan  # rungs always hold `steps`: the loop runs at least once
    for i, rung in enumerate(settings.rungs):
        # The first segment refuses a folder that already holds checkpoints (another study's trial).
        checkpoint = train_predictor(replace(cfg, stop_at=rung, resume=i > 0), data.train)
        scores = score(checkpoint, data.validation, settings.device)
        value = scores[OBJECTIVE]
        trial.set_user_attr("steps", rung)
        trial.set_user_attr("checkpoint", str(checkpoint))
        trial.set_user_attr("min_ade", scores["min_ade"])
        trial.report(value, rung)
        if rung < settings.steps and trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {rung}: {OBJECTIVE} {value:.4f}")
    return value


def make_objective(
    settings: SweepSettings, data: SweepData, space: dict[str, Dimension], invocation: str = ""
) -> Callable[[optuna.Trial], float]:
    """The objective one worker hands Optuna: every trial records which process and which invocation ran it
    (workers on several machines share a study) and, when it fails, why."""

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker_name())
        trial.set_user_attr("invocation", invocation)
        trial.set_user_attr("steps", 0)
        try:
            return train_and_score(trial, settings, data, space)
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # optuna records the trial as FAIL; keep why in the study, for trials.csv
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise

    return objective
