"""`drivestack fleet sweep`: hyperparameter search for the prediction stage trained from drive logs.

    drivestack fleet sweep --stage prediction --logs logs --out runs/sweep --trials 30 --workers 2
    drivestack fleet sweep ... --storage postgresql://user@db/sweeps --study-name pred-v2   # on each machine

Only the prediction stage is swept so far; pretrain, perception and end2end are not.

A trial samples the fields of `SEARCH_SPACE` (a table: add a line to search
another field of `PredictionTrainConfig`, or `predictor.<field>` of its
`PredictorConfig`), trains in `out/trial-NNNN/` in segments that end at the
rungs `min_steps x 3^k` and at `steps` (`stop_at`, then `resume=True`: the
checkpoints land on every rung, so a segment continues exactly where the last
stopped), and after each segment scores the checkpoint on the windows of the
held-out validation drives (split by drive, as `fleet train` splits them):
the mixture NLL of the whole future per agent (`OBJECTIVE`, lower is better),
with minADE kept beside it. Optuna's Hyperband pruner stops trials that trail
at a rung, so most of the budget goes to the promising ones; TPE picks the
next trial's values from the finished ones, after a few random ones
(`workers.startup_trials`), with the seeds of `workers.worker_seed`.

The study lives in `--storage` (default `sqlite:///<out>/sweep.db`), so any
number of processes can work on it: `--workers K` runs K workers here (1 in
this process, K >= 2 each in a spawned process), and another invocation with
the same storage and `--study-name` (a second terminal, or another machine
when the storage is a database server) joins the study and adds its `--trials`.
SQLite suits the processes of one machine; it is not safe on a network file
system, use a database server across machines.
A study records the settings that make its trials comparable (steps, rungs,
predictor, training seed, validation fraction, the training and validation
drives, search space); joining it with others is refused. An out folder holds
the trials of one study (its name, storage and uuid in `out/sweep.json`).

At the end `out/best.json` (best value, its parameters, trial and model file)
and `out/trials.csv` (every trial of the study) are rewritten, and a table is
printed. A trial that raises is recorded as FAIL with its error and the sweep
goes on.

The modules: `space` (the searched fields), `settings` (`SweepSettings`), `study` (storage, creating or
joining the study), `trial` (the data, one trial, the objective), `workers` (the processes sharing the
trials), `results` (rows, best.json, trials.csv, the table), `run` (`sweep`) and `cli` (`add_parser`).
"""

from __future__ import annotations

import importlib
from typing import Any

# Public names and the module each lives in, imported on first use (PEP 562): `drivestack` builds the
# `fleet sweep` parser for every command, and the other modules load Optuna and SQLAlchemy.
_EXPORTS = {
    "add_parser": "cli", "run_sweep": "cli", "settings_from_args": "cli",
    "BEST_FILE": "results", "TRIALS_FILE": "results", "SweepResult": "results",
    "sweep": "run",
    "OBJECTIVE": "settings", "SWEPT_STAGES": "settings", "SweepSettings": "settings",
    "SEARCH_SPACE": "space", "Dimension": "space", "log_uniform": "space", "one_of": "space", "uniform": "space",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
