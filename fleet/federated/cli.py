"""`drivestack fleet federated`: the command line of the federated job and its centralised baselines."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from core.io import write_json
from fleet.federated.baselines import centralised_rounds_train, centralised_train
from fleet.federated.config import ASSIGNMENTS, ROUNDS_NAME, SUMMARY_NAME, FederatedConfig
from fleet.federated.data import read_split
from fleet.federated.loop import federated_train
from fleet.federated.report import comparison, format_row, table_header
from prediction.config import PredictorConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    """The `federated` step of `drivestack fleet` (`sub`: its subcommands)."""
    d = FederatedConfig()
    p = sub.add_parser("federated", help="federated averaging of the predictor across simulated vehicles")
    p.add_argument("--logs", type=Path, required=True, help="log folder (`drivestack fleet record`)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--vehicles", type=int, default=d.vehicles, help=f"simulated vehicles (default {d.vehicles})")
    p.add_argument("--rounds", type=int, default=d.rounds, help=f"FedAvg rounds (default {d.rounds})")
    p.add_argument("--local-steps", type=int, default=d.local_steps,
                   help=f"optimiser steps per vehicle per round (default {d.local_steps})")  # fmt: skip
    p.add_argument(
        "--assign",
        choices=ASSIGNMENTS,
        default=d.assign,
        help="drives to vehicles: by a hash of the drive name (IID-ish) or by scenario family (non-IID)",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"windows per step (default {d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"peak learning rate (default {d.lr:g})")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the initial weights, data order, augmentation")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help=f"drives held out, by a hash of their name (default {d.val_fraction:g})")  # fmt: skip
    p.add_argument("--predictor", choices=("default", "tiny"), default="default", help="network size")
    p.add_argument(
        "--centralised",
        action="store_true",
        help="also train the pooled baseline on the same drives, as many samples, one cosine LR, and compare",
    )
    p.add_argument(
        "--centralised-rounds",
        action="store_true",
        help="also train the schedule-matched pooled baseline in out/centralised-rounds: one vehicle holding every "
        "training drive, vehicles x local-steps steps per round, the LR cosine restarted every round, and compare",
    )
    p.add_argument("--resume", action="store_true", help="continue from the last finished round in --out")
    p.add_argument("--stop-after-round", type=int, default=None, help="stop after this round (resume later)")
    p.add_argument("--device", default=d.device, help="torch device (default cpu)")
    p.set_defaults(run=run_federated)


def config_from_args(args: argparse.Namespace) -> FederatedConfig:
    predictor = PredictorConfig.tiny() if args.predictor == "tiny" else PredictorConfig()
    return FederatedConfig(
        out=args.out, vehicles=args.vehicles, rounds=args.rounds, local_steps=args.local_steps, assign=args.assign,
        val_fraction=args.val_fraction, predictor=predictor, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
        resume=args.resume, stop_after_round=args.stop_after_round, device=args.device,
    )  # fmt: skip


def run_federated(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    split = read_split(args.logs, cfg.val_fraction)
    print(f"{len(split.train)} training drives on {cfg.vehicles} vehicles (by {cfg.assign}), "
          f"{len(split.validation)} validation drives")  # fmt: skip
    print(f"{'round':>5} {'samples':>8} {'val NLL':>10} {'val minADE':>10} {'seconds':>8}")

    def print_round(entry: dict[str, Any]) -> None:
        scores = entry["validation"]
        print(f"{entry['round']:>5} {entry['samples']:>8} {scores['nll_joint']:>10.3f} {scores['min_ade']:>10.3f} "
              f"{entry['seconds']:>8.1f}", flush=True)  # fmt: skip

    result = federated_train(args.logs, cfg, split=split, on_round=print_round)
    if not result.finished:
        print(f"stopped after round {len(result.rounds)} of {cfg.rounds}; --resume continues")
    central = centralised_train(args.logs, cfg, split=split) if args.centralised else None
    matched = centralised_rounds_train(args.logs, cfg, split=split) if args.centralised_rounds else None
    table = comparison(result.rounds, central, matched.rounds if matched is not None else None)
    if central is not None or matched is not None:
        print(f"\nvalidation, federated vs centralised at the same sample count (cen: one cosine LR over the run, "
              f"cen-r: in rounds, the LR restarted every round as the vehicles'):\n{table_header()}")  # fmt: skip
        for row in table:
            print(format_row(row))
    summary = {"config": cfg, "model": result.model, "finished": result.finished, "table": table}
    if matched is not None:
        summary["centralised_rounds_model"] = matched.model
    write_json(Path(cfg.out) / SUMMARY_NAME, summary)
    print(f"wrote {result.model} and {Path(cfg.out) / ROUNDS_NAME}")
    return 0
