"""`sweep`: one invocation, from its checks to the results it writes."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import optuna

from core.io import write_json
from fleet.sweep.results import SweepResult, added_states, best_record, trial_rows, write_results
from fleet.sweep.settings import SweepSettings
from fleet.sweep.space import SEARCH_SPACE, Dimension, check_space
from fleet.sweep.study import CLAIM_FILE, check_out_folder, create_or_join, folder_claim, open_storage
from fleet.sweep.trial import check_split
from fleet.sweep.workers import WorkerJob, run_workers, trial_shares
from fleet.train import training_drives


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
    drives = check_split(settings)
    out.mkdir(parents=True, exist_ok=True)  # the default SQLite file goes there
    check_out_folder(out, settings.study_name, open_storage(settings.storage))
    study, created = create_or_join(settings, space, drives)
    write_json(out / CLAIM_FILE, folder_claim(study, settings.storage))
    training_drives(settings.logs, out, settings.val_fraction)  # writes drives.json, as `fleet train` does
    invocation, shares = uuid.uuid4().hex, trial_shares(settings.trials, settings.workers)
    jobs = [
        WorkerJob(settings, i, len(shares), share, space, pruner, joining=not created, invocation=invocation)
        for i, share in enumerate(shares)
    ]
    failed = run_workers(jobs)
    study = optuna.load_study(study_name=settings.study_name, storage=open_storage(settings.storage))  # fresh read
    rows, best = trial_rows(study, space), best_record(study, settings.storage)
    result = SweepResult(rows, best, failed, added_states(study, invocation))
    write_results(out, result, space)
    return result
