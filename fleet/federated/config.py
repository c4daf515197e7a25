"""The federated job's settings (`FederatedConfig`), the file names of its output folder and the loop configs it
derives: a vehicle's local run and the pooled centralised run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import require
from prediction.config import PredictorConfig
from prediction.train import OBJECTIVES, PredictionTrainConfig

ASSIGNMENTS = ("hash", "scenario")
KIND = "fleet-federated"
GLOBAL_NAME = "global.safetensors"
ROUNDS_NAME = "rounds.json"
CENTRAL_DIR = "centralised"
CENTRAL_NAME = "centralised.json"
CENTRAL_ROUNDS_DIR = "centralised-rounds"  # the schedule-matched centralised baseline (a one-vehicle federated run)
SUMMARY_NAME = "summary.json"
SCRATCH_DIR = "local"  # the vehicles' local runs of the round in progress
VEHICLE_SALT = "fleet-vehicle:"  # makes the vehicle hash independent of the validation split's
SEED_STRIDE = 10_007  # between the seeds of consecutive (round, vehicle) local runs
# Config fields that may change between a run and its resumption without changing the result.
RESUMABLE_CHANGES = frozenset({"out", "resume", "stop_after_round", "device"})
HEADLINE = ("nll_joint", "min_ade")  # the table's metrics: whole-path mixture NLL (nats/step), minADE of 20 (m)


@dataclass(frozen=True)
class FederatedConfig:
    """A federated job and its centralised comparison.

    Attributes:
        out: output folder (global model, rounds log, the centralised runs under `centralised/` and
            `centralised-rounds/`).
        vehicles: simulated vehicles, each holding the training drives dealt to it.
        rounds: FedAvg rounds.
        local_steps: optimiser steps each vehicle takes per round.
        assign: how drives are dealt to vehicles: "hash" (IID-ish) or "scenario" (by scenario family, non-IID).
        val_fraction: drives held out for validation (by a hash of their name, as `fleet train`).
        eval_samples: samples per agent for minADE/minFDE.
        stop_after_round: end the run after this round (resume later); None runs every round.
        The other fields are those of `PredictionTrainConfig`, shared by the local and centralised runs.
    """

    out: Path = Path("runs/fleet/federated")
    vehicles: int = 4
    rounds: int = 10
    local_steps: int = 25
    assign: str = "hash"
    val_fraction: float = 0.2
    predictor: PredictorConfig = field(default_factory=PredictorConfig)
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    objective: str = "wta"
    wta_relax: float = 0.05
    wta_distance: float = 1.0
    kl_weight: float = 1.0
    kl_min: float = 0.07
    rotate: bool = True
    position_std: float = 0.05
    eval_samples: int = 20
    seed: int = 0
    resume: bool = False
    stop_after_round: int | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        o = type(self).__name__
        for name in ("vehicles", "rounds", "local_steps", "batch_size", "eval_samples"):
            value = getattr(self, name)
            require(is_int(value) and value >= 1, o, name, "an int >= 1", value)
        require(self.assign in ASSIGNMENTS, o, "assign", f"one of {ASSIGNMENTS}", self.assign)
        require(is_number(self.val_fraction) and 0 < self.val_fraction < 1, o, "val_fraction",
                "a number in (0, 1): the rounds are scored on the held-out drives", self.val_fraction)  # fmt: skip
        require(isinstance(self.predictor, PredictorConfig), o, "predictor", "a PredictorConfig", self.predictor)
        require(is_number(self.lr) and self.lr > 0, o, "lr", "> 0", self.lr)
        require(self.objective in OBJECTIVES, o, "objective", f"one of {OBJECTIVES}", self.objective)
        require(is_number(self.wta_relax) and 0 <= self.wta_relax < 1, o, "wta_relax", "in [0, 1)", self.wta_relax)
        for name in ("weight_decay", "wta_distance", "kl_weight", "kl_min"):
            value = getattr(self, name)
            require(is_number(value) and value >= 0, o, name, ">= 0", value)
        require(is_number(self.grad_clip) and self.grad_clip > 0, o, "grad_clip", "> 0", self.grad_clip)
        require(is_number(self.position_std) and self.position_std > 0, o, "position_std", "> 0 m",
                self.position_std)  # fmt: skip
        require(is_int(self.seed) and self.seed >= 0, o, "seed", "an int >= 0", self.seed)
        stop = self.stop_after_round
        require(stop is None or (is_int(stop) and 1 <= stop <= self.rounds), o, "stop_after_round",
                f"None or an int in [1, rounds = {self.rounds}]", stop)  # fmt: skip

    @property
    def steps_per_round(self) -> int:
        """Optimiser steps the whole fleet takes per round: the centralised run's steps per round."""
        return self.vehicles * self.local_steps

    @property
    def last_round(self) -> int:
        """The round this session ends after."""
        return self.stop_after_round or self.rounds

    def local_config(self, out: Path, seed: int) -> PredictionTrainConfig:
        """One vehicle's round: a complete short run of the training loop."""
        return self._train_config(out, steps=self.local_steps, checkpoint_every=self.local_steps, seed=seed,
                                  resume=False, stop_at=None)  # fmt: skip

    def centralised_config(self, out: Path) -> PredictionTrainConfig:
        """The pooled baseline: as many steps as the fleet takes, a checkpoint at every round's sample count."""
        stop = None if self.stop_after_round is None else self.stop_after_round * self.steps_per_round
        return self._train_config(out, steps=self.rounds * self.steps_per_round, checkpoint_every=self.steps_per_round,
                                  seed=self.seed, resume=self.resume, stop_at=stop)  # fmt: skip

    def _train_config(self, out: Path, **loop: Any) -> PredictionTrainConfig:
        return PredictionTrainConfig(
            out=out, predictor=self.predictor, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
            warmup_steps=0, grad_clip=self.grad_clip, objective=self.objective, wta_relax=self.wta_relax,
            wta_distance=self.wta_distance, kl_weight=self.kl_weight, kl_anneal_steps=0, kl_min=self.kl_min,
            rotate=self.rotate, position_std=self.position_std, progress=False, device=self.device, **loop,
        )  # fmt: skip


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
