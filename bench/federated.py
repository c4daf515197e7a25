"""Federated averaging against centralised training of the predictor: validation NLL and minADE per round.

Reads a log folder once (split by drive as `fleet train` splits it), then trains from the same initial weights:

    centralised   the training drives pooled, rounds x vehicles x local-steps steps (as many samples as the fleet)
                  under one cosine LR, scored from its checkpoint at each round's sample count;
    centralised-rounds  schedule-matched: the training drives pooled on one vehicle taking vehicles x local-steps
                  steps per round, the same rounds, per-round cosine restart and fresh optimiser as FedAvg (so
                  FedAvg differs from it by the federation only, and it differs from `centralised` by the schedule);
    fedavg-hash   FedAvg, drives dealt to vehicles by a hash of their name (IID-ish);
    fedavg-scenario  FedAvg, drives dealt by scenario family (non-IID: each vehicle sees some families only).

Each is `fleet.federated` as `drivestack fleet federated --centralised --centralised-rounds [--assign scenario]`
runs it (see that package for the local runs, the averaging and the schedule). Validation: the held-out drives'
windows, mixture NLL (`nll_joint`, nats per step) and minADE of 20 samples (m), the same seeded samples for every
model. Prints `fleet.federated`'s comparison table per FedAvg run, writes JSON with every metric per round.

    OMP_NUM_THREADS=1 python bench/federated.py --logs runs/fleet/logs-hard --out docs/bench/federated.json

`--work` keeps the runs; it must be a new (or empty) folder, as the runs refuse to overwrite earlier ones.
"""

# ruff: noqa: E402  (the package imports must follow the sys.path fix below)
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch

from core.benchmark import machine_info
from core.io import write_json
from fleet.federated import (
    ASSIGNMENTS,
    ROUNDS_NAME,
    FederatedConfig,
    centralised_rounds_train,
    centralised_train,
    comparison,
    federated_train,
    format_row,
    read_split,
    table_header,
)
from prediction.config import PredictorConfig


def run_all(args: argparse.Namespace, work: Path) -> dict:
    """Read the logs once, train the centralised baselines and FedAvg per assignment; every run's rounds."""
    predictor = PredictorConfig.tiny() if args.predictor == "tiny" else PredictorConfig()

    def config(name: str, assign: str) -> FederatedConfig:
        return FederatedConfig(out=work / name, vehicles=args.vehicles, rounds=args.rounds,
                               local_steps=args.local_steps, assign=assign, val_fraction=args.val_fraction,
                               predictor=predictor, batch_size=args.batch_size, lr=args.lr, seed=args.seed)  # fmt: skip

    start = time.perf_counter()
    split = read_split(args.logs, args.val_fraction)
    runs = {"read_logs": {"seconds": time.perf_counter() - start, "train_drives": len(split.train),
                          "validation_drives": len(split.validation),
                          "train_windows": split.windows_of(split.train).batch_size,
                          "validation_windows": split.windows_of(split.validation).batch_size}}  # fmt: skip
    start = time.perf_counter()
    central = centralised_train(args.logs, config("centralised", "hash"), split=split)
    runs["centralised"] = {"seconds": time.perf_counter() - start, "rounds": central}
    start = time.perf_counter()
    matched = centralised_rounds_train(args.logs, config("centralised-rounds", "hash"), split=split)
    runs["centralised-rounds"] = {"seconds": time.perf_counter() - start, "rounds": matched.rounds}
    for assign in args.assign:
        cfg = config(f"fedavg-{assign}", assign)
        start = time.perf_counter()
        result = federated_train(args.logs, cfg, split=split)
        seconds = time.perf_counter() - start
        vehicles = json.loads((cfg.out / ROUNDS_NAME).read_text())["vehicles"]  # each one's drives and windows
        runs[f"fedavg-{assign}"] = {"seconds": seconds, "vehicles": vehicles, "rounds": result.rounds}
    return runs


def print_table(runs: dict, assign: list[str]) -> None:
    """The package's comparison table (`fleet.federated.report`), one per FedAvg run, against both baselines."""
    for a in assign:
        table = comparison(runs[f"fedavg-{a}"]["rounds"], runs["centralised"]["rounds"],
                           runs["centralised-rounds"]["rounds"])  # fmt: skip
        print(f"\nfed: fedavg-{a}\n{table_header()}")
        for row in table:
            print(format_row(row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, required=True, help="log folder (`drivestack fleet record`)")
    parser.add_argument("--vehicles", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--local-steps", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--predictor", choices=("default", "tiny"), default="default")
    parser.add_argument("--assign", nargs="+", choices=ASSIGNMENTS, default=list(ASSIGNMENTS),
                        help="FedAvg runs, one per way of dealing drives to vehicles (default both)")  # fmt: skip
    parser.add_argument("--work", type=Path, help="folder for the runs (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/federated.json"))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.work is not None:
        runs = run_all(args, args.work)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            runs = run_all(args, Path(tmp))
    wall = time.perf_counter() - start
    print_table(runs, args.assign)
    names = ["centralised", "centralised-rounds", *(f"fedavg-{a}" for a in args.assign)]
    for name in names:
        final = runs[name]["rounds"][-1]["validation"]
        print(f"{name}: final " + ", ".join(f"{m} {final[m]:.3f}" for m in ("nll_joint", "nll_step", "min_ade",
              "min_fde")) + f" ({runs[name]['seconds']:.0f} s)")  # fmt: skip
    print(f"wall {wall:.0f} s")
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    write_json(args.out, {"settings": settings, "runs": runs, "wall_seconds": wall, "threads": torch.get_num_threads(),
                          "machine": machine_info()})  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
