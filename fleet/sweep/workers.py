"""The worker processes that share a study: their jobs, seeds and shares of the trials, and how they run.

`run_worker` and `WorkerJob` cross a "spawn": they stay importable at module level."""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import optuna
import torch

from fleet.sweep.settings import SweepSettings
from fleet.sweep.space import Dimension
from fleet.sweep.study import default_pruner, open_storage
from fleet.sweep.trial import load_data, make_objective


@dataclass(frozen=True)
class WorkerJob:
    """What one worker process needs (picklable: it crosses a spawn)."""

    settings: SweepSettings  # with `out` absolute and `storage` set
    index: int
    trials: int
    sampler_seed: int
    space: dict[str, Dimension]
    pruner: optuna.pruners.BasePruner | None = None  # None = `default_pruner`


def worker_seed(seed: int, worker: int, trials_before: int) -> int:
    """The sampler seed of one worker: distinct per worker, and per invocation joining a study (by the trials
    already in it), so parallel samplers do not propose the same first points; reproducible for a fresh study."""
    return int(np.random.SeedSequence([seed, worker, trials_before]).generate_state(1)[0])


def trial_shares(trials: int, workers: int) -> list[int]:
    """Trials per worker, as even as they go; no worker is started for none."""
    shares = [trials // workers + (i < trials % workers) for i in range(workers)]
    return [share for share in shares if share > 0]


def run_worker(job: WorkerJob) -> None:
    """Load the data, join the study and run this worker's trials on one torch thread (K workers share the
    machine's cores; more threads each would only contend)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        settings = job.settings
        data = load_data(settings)
        study = optuna.load_study(
            study_name=settings.study_name,
            storage=open_storage(settings.storage_url()),
            sampler=optuna.samplers.TPESampler(seed=job.sampler_seed),
            pruner=job.pruner if job.pruner is not None else default_pruner(settings),
        )
        study.optimize(make_objective(settings, data, job.space), n_trials=job.trials, catch=(Exception,))
    finally:
        torch.set_num_threads(threads)


def run_workers(jobs: Sequence[WorkerJob]) -> list[int]:
    """Run the jobs: one in this process, several as spawned processes (fork would copy torch's threads and
    the parent's database connections). Returns the indices of workers that exited with an error."""
    if len(jobs) == 1:
        run_worker(jobs[0])
        return []
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=run_worker, args=(job,), name=f"sweep-worker-{job.index}") for job in jobs]
    try:
        for process in processes:
            process.start()
        for process in processes:
            process.join()
    finally:  # interrupted: leave no worker behind
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join()
    return [job.index for job, process in zip(jobs, processes, strict=True) if process.exitcode != 0]
