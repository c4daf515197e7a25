"""The worker processes that share a study: their jobs, samplers, seeds and shares of the trials, and how they
run.

`run_worker` and `WorkerJob` cross a "spawn": they stay importable at module level."""

from __future__ import annotations

import hashlib
import multiprocessing
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import optuna
import torch

from fleet.sweep.settings import SweepSettings
from fleet.sweep.space import Dimension
from fleet.sweep.study import default_pruner, open_storage
from fleet.sweep.trial import load_data, make_objective, worker_name

# Random trials before TPE models them: Optuna's default for a study, shared among Hyperband's brackets.
STARTUP_TRIALS = 10


@dataclass(frozen=True)
class WorkerJob:
    """What one worker process needs (picklable: it crosses a spawn)."""

    settings: SweepSettings  # with `out` absolute and `storage` set
    index: int
    workers: int  # of this invocation
    trials: int
    space: dict[str, Dimension]
    pruner: optuna.pruners.BasePruner | None = None  # None = `default_pruner`
    joining: bool = False  # the study existed before this invocation
    invocation: str = ""  # recorded on each trial: which trials this invocation ran


def worker_seed(seed: int, worker: int, joining_as: str | None = None) -> int:
    """The sampler seed of one worker: from `seed` and the worker's index in a study this invocation created
    (reproducible); joining one, also from the worker's identity (`joining_as`, hostname:pid), so invocations
    that join together, in two terminals or on two machines, do not draw the same values."""
    entropy = [seed, worker]
    if joining_as is not None:
        entropy.append(int.from_bytes(hashlib.sha256(joining_as.encode()).digest()[:16], "big"))
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def startup_trials(settings: SweepSettings, pruner: optuna.pruners.BasePruner) -> int:
    """Random trials before TPE models the finished ones: `STARTUP_TRIALS` shared among Hyperband's brackets,
    at least 2 (3 at the default 3 brackets). Optuna documents that under a HyperbandPruner TPE sees only the
    trials of the new trial's bracket, so that each bracket would start with these on its own; Optuna 5.0.0
    filters only the pruner's trials, not TPE's, so they are the study's first trials."""
    brackets = settings.brackets if isinstance(pruner, optuna.pruners.HyperbandPruner) else 1
    return max(2, STARTUP_TRIALS // brackets)


def make_sampler(settings: SweepSettings, pruner: optuna.pruners.BasePruner, seed: int) -> optuna.samplers.TPESampler:
    """TPE; `constant_liar` (Optuna 5's default, set here all the same): the running trials of other workers
    count as bad, so parallel workers do not all sample next to the best."""
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(settings, pruner), constant_liar=True)


def trial_shares(trials: int, workers: int) -> list[int]:
    """Trials per worker, as even as they go; no worker is started for none."""
    shares = [trials // workers + (i < trials % workers) for i in range(workers)]
    return [share for share in shares if share > 0]


def run_worker(job: WorkerJob) -> None:
    """Load the data, join the study and run this worker's trials on its share of the threads (K workers
    share the machine's cores; a lone worker keeps its process's threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads // job.workers))
    try:
        settings = job.settings
        data = load_data(settings)
        pruner = job.pruner if job.pruner is not None else default_pruner(settings)
        seed = worker_seed(settings.seed, job.index, worker_name() if job.joining else None)
        study = optuna.load_study(
            study_name=settings.study_name,
            storage=open_storage(settings.storage_url()),
            sampler=make_sampler(settings, pruner, seed),
            pruner=pruner,
        )
        objective = make_objective(settings, data, job.space, job.invocation)
        study.optimize(objective, n_trials=job.trials, catch=(Exception,))
    finally:
        torch.set_num_threads(threads)


def run_workers(jobs: Sequence[WorkerJob]) -> list[int]:
    """Run the jobs: a single one in this process, several each in a spawned process (fork would copy torch's
    threads and the parent's database connections). Returns the indices of workers that exited with an
    error."""
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
