"""`SweepSettings`: one invocation of the sweep (its command-line options), checked as it is made."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from core.config import ConfigError

SWEPT_STAGES = ("prediction",)  # pretrain, perception and end2end are not swept yet
# The whole-future mixture NLL, nats per step per agent: the likelihood the model's ELBO trains, and it
# rewards forecasts whose modes explain a whole future, not each step on its own ("nll_step").
OBJECTIVE = "nll_joint"
REDUCTION_FACTOR = 3  # Hyperband: a third of the trials of a rung go on to the next, 3x as long


def _require(cond: bool, name: str, expected: str, value: object) -> None:
    """An error naming the field and its command-line option."""
    if not cond:
        raise ConfigError(f"SweepSettings.{name} (--{name.replace('_', '-')}): expected {expected}, got {value!r}")


def check_storage_url(url: str) -> None:
    """A SQLAlchemy database URL whose dialect is installed (the driver itself is loaded on connecting)."""
    from sqlalchemy.engine import make_url  # here, not at import: every `drivestack` command builds this parser
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url).get_dialect()
    except ArgumentError as exc:  # also an unknown dialect (NoSuchModuleError)
        raise ConfigError(
            f"SweepSettings.storage (--storage): expected a database URL such as sqlite:///runs/sweep.db or "
            f"postgresql://user@host/db, got {url!r} ({exc})"
        ) from exc


@dataclass(frozen=True)
class SweepSettings:
    """One invocation of the sweep (the command-line options; see the `fleet.sweep` package docstring).

    Attributes:
        logs: the drive log folder.
        out: the trials' folders, the default SQLite storage, best.json and trials.csv.
        trials: trials this invocation adds to the study, shared among its workers.
        workers: processes on this machine: 1 runs in this process, K >= 2 are all spawned.
        steps: optimiser steps of a trial that is never pruned (Hyperband's max resource).
        min_steps: the first rung (Hyperband's min resource); `steps` must be a multiple of it.
        storage: database URL of the study; None = sqlite:///<out>/sweep.db.
        study_name: the study in the storage; invocations with the same name join it.
        val_fraction: drives held out to score the trials (by a hash of their name).
        seed: every trial's training seed, and the sampler seeds' (see `workers.worker_seed`).
        predictor: "default" or "tiny" (tests, smoke runs): the model the searched fields change.
        stage: the stage swept; only "prediction" so far.
        device: torch device of training and scoring.
    """

    logs: Path
    out: Path
    trials: int = 20
    workers: int = 1
    steps: int = 900
    min_steps: int = 100
    storage: str | None = None
    study_name: str = "prediction-sweep"
    val_fraction: float = 0.2
    seed: int = 0
    predictor: str = "default"
    stage: str = "prediction"
    device: str = "cpu"

    def __post_init__(self) -> None:
        _require(self.stage in SWEPT_STAGES, "stage", f"one of {SWEPT_STAGES} (the other stages are not swept yet)",
                 self.stage)  # fmt: skip
        for name in ("trials", "workers", "steps", "min_steps"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 1, name, "an int >= 1", value)
        _require(self.min_steps <= self.steps, "min_steps", f"at most --steps ({self.steps})", self.min_steps)
        every_rung = f"a multiple of --min-steps ({self.min_steps}), so every rung ends on a checkpoint"
        _require(self.steps % self.min_steps == 0, "steps", every_rung, self.steps)
        _require(0 < self.val_fraction < 1, "val_fraction", "a number in (0, 1): trials are scored on held-out drives",
                 self.val_fraction)  # fmt: skip
        _require(isinstance(self.seed, int) and self.seed >= 0, "seed", "an int >= 0", self.seed)
        _require(self.predictor in ("default", "tiny"), "predictor", "'default' or 'tiny'", self.predictor)
        _require(bool(self.study_name), "study_name", "a non-empty name", self.study_name)
        if self.storage is not None:
            check_storage_url(self.storage)

    @property
    def rungs(self) -> list[int]:
        """The steps at which a trial is scored (and may be pruned): min_steps x 3^k below `steps`, then `steps`."""
        rungs, rung = [], self.min_steps
        while rung < self.steps:
            rungs.append(rung)
            rung *= REDUCTION_FACTOR
        return rungs + [self.steps]

    @property
    def brackets(self) -> int:
        """The number of brackets of the Hyperband pruner over the rungs: Optuna's own formula (floats, as it
        computes them)."""
        return math.floor(math.log(self.steps / self.min_steps, REDUCTION_FACTOR)) + 1

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.out).resolve()}/sweep.db"
