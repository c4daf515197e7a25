"""The command line: `drivestack fleet sweep` (added to the `fleet` subcommands by `add_parser`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from fleet.sweep.settings import OBJECTIVE, SWEPT_STAGES, SweepSettings


def add_parser(sub: argparse._SubParsersAction) -> None:
    """`drivestack fleet sweep` (added to the `fleet` subcommands)."""
    d = SweepSettings(logs=Path("."), out=Path("."))  # the defaults, for the help
    p = sub.add_parser("sweep", help="hyperparameter search (Optuna, Hyperband pruning); workers share a study")
    not_yet = "pretrain, perception and end2end are not swept yet"
    p.add_argument("--stage", choices=SWEPT_STAGES, default="prediction", help=f"the stage swept ({not_yet})")
    p.add_argument("--logs", type=Path, required=True, help="log folder (`drivestack fleet record`)")
    p.add_argument("--out", type=Path, required=True,
                   help="trial folders, the default SQLite study, best.json and trials.csv")  # fmt: skip
    p.add_argument("--trials", type=int, default=d.trials, help=f"trials this invocation adds (default {d.trials})")
    p.add_argument("--workers", type=int, default=d.workers,
                   help=f"processes here sharing the trials, at most --trials (default {d.workers})")  # fmt: skip
    p.add_argument("--steps", type=int, default=d.steps,
                   help=f"optimiser steps of a trial that is never pruned (default {d.steps})")  # fmt: skip
    p.add_argument("--min-steps", type=int, default=d.min_steps,
                   help=f"the first rung; the others are 3x apart up to --steps (default {d.min_steps})")  # fmt: skip
    p.add_argument("--storage", help="database URL of the study (default sqlite:///<out>/sweep.db); "
                   "the same URL and --study-name on another machine or terminal join the study")  # fmt: skip
    p.add_argument("--study-name", default=d.study_name, help=f"the study (default {d.study_name})")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help=f"drives held out to score the trials (default {d.val_fraction})")  # fmt: skip
    p.add_argument("--seed", type=int, default=d.seed,
                   help="every trial's training seed; the samplers' (with hostname:pid when joining)")  # fmt: skip
    p.add_argument("--predictor", choices=("default", "tiny"), default=d.predictor, help="network size")
    p.add_argument("--device", default=d.device, help="torch device (default cpu)")
    p.set_defaults(run=run_sweep)


def settings_from_args(args: argparse.Namespace) -> SweepSettings:
    return SweepSettings(
        logs=args.logs,
        out=args.out,
        trials=args.trials,
        workers=args.workers,
        steps=args.steps,
        min_steps=args.min_steps,
        storage=args.storage,
        study_name=args.study_name,
        val_fraction=args.val_fraction,
        seed=args.seed,
        predictor=args.predictor,
        stage=args.stage,
        device=args.device,
    )


def run_sweep(args: argparse.Namespace) -> int:
    """0 when a trial of the study has completed, a trial of this invocation completed or was pruned (did not
    fail), and every worker finished cleanly; else 1."""
    # Optuna and SQLAlchemy load here, not when `drivestack` builds its parser for every command.
    from fleet.sweep.results import BEST_FILE, TRIALS_FILE, format_table
    from fleet.sweep.run import sweep
    from fleet.sweep.space import SEARCH_SPACE

    settings = settings_from_args(args)
    result = sweep(settings)
    out = Path(settings.out)
    print(format_table(result.rows, SEARCH_SPACE))
    print(f"{len(result.rows)} trials in study {settings.study_name!r} -> {out / TRIALS_FILE}")
    if result.failed_workers:
        print(f"workers {result.failed_workers} exited with an error (see above)")
    if result.best is None:
        print("no trial has completed yet")
        return 1
    best = result.best
    print(f"best: trial {best['trial']}, {OBJECTIVE} {best['value']:.4f}, {best['checkpoint']} -> {out / BEST_FILE}")
    if not result.added.get("COMPLETE", 0) + result.added.get("PRUNED", 0):
        print(f"none of the {sum(result.added.values())} trials of this invocation completed or was pruned "
              f"(see the error column of {out / TRIALS_FILE})")  # fmt: skip
        return 1
    return 0 if not result.failed_workers else 1
