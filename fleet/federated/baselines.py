"""The centralised baselines: the same model, initial weights, batch size, peak LR and KL weight on the training
drives pooled, processing as many samples as the fleet (a FedAvg round costs V x S steps of compute).

    centralised          one run of the loop, rounds x V x S steps under one cosine, scored from its checkpoints
                         at each round's sample count (`centralised_train`, in `out/centralised`);
    centralised-rounds   schedule-matched: FedAvg with one vehicle holding every training drive and V x S local
                         steps per round, i.e. the federated loop itself: the same rounds, the same cosine restart
                         and fresh AdamW every round, the same samples per round (`centralised_rounds_train`, in
                         `out/centralised-rounds`). Against it FedAvg differs by the federation only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from core.checkpoint import load_checkpoint
from core.io import write_json
from fleet.federated.config import CENTRAL_DIR, CENTRAL_NAME, CENTRAL_ROUNDS_DIR, FederatedConfig
from fleet.federated.data import LogSplit, read_split
from fleet.federated.loop import FederatedResult, federated_train
from fleet.federated.rounds import validation_scores
from prediction.checkpoint import load_predictor
from prediction.train import train as train_predictor


def centralised_train(
    logs: str | Path,
    cfg: FederatedConfig,
    *,
    split: LogSplit | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """The pooled baseline (one cosine over the whole run) in `cfg.out/centralised`; returns, per round, its
    validation scores at the sample count the fleet reached at that round (also written to `centralised.json`)."""
    split = split if split is not None else read_split(logs, cfg.val_fraction)
    pooled = split.windows_of(split.train)
    validation = split.windows_of(split.validation)
    out = Path(cfg.out) / CENTRAL_DIR
    last = train_predictor(cfg.centralised_config(out), pooled)
    seconds = load_checkpoint(last).meta["train_seconds"]  # every session's, when resumed
    rows = []
    for number in range(1, cfg.last_round + 1):
        steps = number * cfg.steps_per_round
        model, _ = load_predictor(out / f"step-{steps:06d}.safetensors", cfg.device)
        row = {"round": number, "optimizer_steps": steps, "samples": steps * cfg.batch_size,
               "validation": validation_scores(model, validation, cfg)}  # fmt: skip
        rows.append(row)
        if on_round is not None:
            on_round(row)
    write_json(Path(cfg.out) / CENTRAL_NAME, {"config": cfg, "train_windows": pooled.batch_size,
                                              "train_seconds": seconds, "rounds": rows})  # fmt: skip
    return rows


def centralised_rounds_config(cfg: FederatedConfig) -> FederatedConfig:
    """The schedule-matched baseline of `cfg`: one vehicle (it gets every training drive, whatever the
    assignment) taking the whole fleet's `vehicles x local_steps` steps per round, in `cfg.out/centralised-rounds`;
    rounds, resume and stopping as `cfg`."""
    return replace(cfg, out=Path(cfg.out) / CENTRAL_ROUNDS_DIR, vehicles=1, local_steps=cfg.steps_per_round,
                   assign="hash")  # fmt: skip


def centralised_rounds_train(
    logs: str | Path,
    cfg: FederatedConfig,
    *,
    split: LogSplit | None = None,
    on_round: Callable[[dict[str, Any]], None] | None = None,
) -> FederatedResult:
    """The schedule-matched centralised baseline of `cfg` (`centralised_rounds_config`): the federated loop on a
    one-vehicle fleet, with its rounds log, global model and resumption."""
    return federated_train(logs, centralised_rounds_config(cfg), split=split, on_round=on_round)
