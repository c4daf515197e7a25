"""The pieces of a round: the initial global weights, one vehicle's local run, scoring a global model.

A vehicle's round is `local_steps` steps of the shared training loop (`prediction.train.train` with `initial=` the
global weights) on its own windows: a fresh AdamW (optimiser state never leaves a vehicle), the learning rate a
cosine from `lr` to 0 over the round (no warm-up), data order and augmentation seeded per (round, vehicle).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from core.checkpoint import load_checkpoint, load_weights
from core.training import latest_checkpoint
from fleet.federated.config import SEED_STRIDE, FederatedConfig
from fleet.federated.vehicles import Vehicle
from prediction.api import TrajectoryPredictor
from prediction.checkpoint import PREFIX
from prediction.evaluate import evaluate_scene
from prediction.model import Predictor
from prediction.train import train as train_predictor
from prediction.windows import TrajectoryWindows


def local_seed(seed: int, round_number: int, vehicle: int, vehicles: int) -> int:
    """The seed of a vehicle's local run (data order, augmentation): one per (round, vehicle). Round 1's vehicle 0
    gets `seed` itself, so one vehicle for one round is exactly the centralised run."""
    return seed + SEED_STRIDE * ((round_number - 1) * vehicles + vehicle)


def initial_weights(cfg: FederatedConfig) -> dict[str, Tensor]:
    """Round 1's global model: the seed's random weights, made as `prediction.train.train` makes them."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = Predictor(cfg.predictor)
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


def local_round(
    weights: Mapping[str, Tensor], vehicle: Vehicle, cfg: FederatedConfig, round_number: int, scratch: Path
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """One vehicle's round: `local_steps` steps of the training loop on its own windows, from `weights`.
    Returns its new weights and a report (its last batch's loss terms, seconds)."""
    out = scratch / f"vehicle-{vehicle.number:03d}"
    shutil.rmtree(out, ignore_errors=True)  # a killed round leaves checkpoints the loop would refuse to overwrite
    seed = local_seed(cfg.seed, round_number, vehicle.number, cfg.vehicles)
    start = time.perf_counter()
    final = train_predictor(cfg.local_config(out, seed), vehicle.windows, initial=weights)
    new_weights = load_checkpoint(final).subset(PREFIX)
    losses = load_checkpoint(latest_checkpoint(out)).meta.get("losses", {})
    shutil.rmtree(out)
    report = {"vehicle": vehicle.number, "seed": seed, "windows": vehicle.num_windows, "last_batch": losses,
              "seconds": time.perf_counter() - start}  # fmt: skip
    return new_weights, report


def predictor_from(weights: Mapping[str, Tensor], cfg: FederatedConfig) -> Predictor:
    model = Predictor(cfg.predictor)
    load_weights(model, dict(weights), "global model", "predictor")
    return model.to(cfg.device).eval()


def validation_scores(model: Predictor, windows: TrajectoryWindows, cfg: FederatedConfig) -> dict[str, float]:
    """Mixture NLL (nll_joint, nll_step), minADE/minFDE and ADE/FDE on the validation windows (seeded samples,
    so two models are scored on the same noise)."""
    predictor = TrajectoryPredictor(model, cfg.position_std)
    return evaluate_scene(predictor, windows.to(cfg.device), num_samples=cfg.eval_samples, kde_samples=0, seed=0)
