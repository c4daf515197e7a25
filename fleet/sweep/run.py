"""`sweep`: one invocation, from its checks to the results it writes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import optuna

from fleet.sweep.results import SweepResult, best_record, trial_rows, write_results
from fleet.sweep.settings import SweepSettings
from fleet.sweep.space import SEARCH_SPACE, Dimension, check_space
from fleet.sweep.study import CLAIM_FILE, check_out_folder, create_or_join, open_storage
from fleet.sweep.trial import check_split
from fleet.sweep.workers import WorkerJob, run_workers, trial_shares, worker_seed
from fleet.train import training_drives
from sim.training import write_json


def sweep(
    settings: SweepSettings,
    space: dict[str, Dimension] | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> SweepResult:
    """Add `settings.trials` trials to the study (created or joined), then write best.json and trials.csv.

    `space` defaults to `SEARCH_SPACE`; `pruner` to Hyperband over the settings' rungs (it must pickle when
    there are several workers)."""
    space = SEARCH_SPACE if space is None else space
    check_space(space)
    out = Path(settings.out).resolve()
    settings = replace(settings, out=out, storage=settings.storage_url())
    check_out_folder(out, settings.study_name)
    check_split(settings)
    out.mkdir(parents=True, exist_ok=True)  # the default SQLite file goes there
    study = create_or_join(settings, space)
    write_json(out / CLAIM_FILE, {"study": settings.study_name})
    training_drives(settings.logs, out, settings.val_fraction)  # writes drives.json, as `fleet train` does
    before = len(study.get_trials(deepcopy=False))
    jobs = [
        WorkerJob(settings, i, share, worker_seed(settings.seed, i, before), space, pruner)
        for i, share in enumerate(trial_shares(settings.trials, settings.workers))
    ]
    failed = run_workers(jobs)
    study = optuna.load_study(study_name=settings.study_name, storage=open_storage(settings.storage))  # fresh read
    result = SweepResult(trial_rows(study, space), best_record(study, settings.storage), failed)
    write_results(out, result)
    return result
