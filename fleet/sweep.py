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
at a rung, so most of the budget goes to the promising ones; TPE (seeded)
picks the next trial's values from the finished ones.

The study lives in `--storage` (default `sqlite:///<out>/sweep.db`), so any
number of processes can work on it: `--workers K` starts K processes here,
and another invocation with the same storage and `--study-name` (a second
terminal, or another machine when the storage is a database server) joins the
study and adds its `--trials`. SQLite suits the processes of one machine; it
is not safe on a network file system, use a database server across machines.
A study records the settings that make its trials comparable (steps, rungs,
predictor, validation split, search space); joining it with others is refused.

At the end `out/best.json` (best value, its parameters, trial and model file)
and `out/trials.csv` (every trial of the study) are rewritten, and a table is
printed. A trial that raises is recorded as FAIL with its error and the sweep
goes on.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import multiprocessing
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from fleet.index import build_index, split_drives
from fleet.logs import LogError
from fleet.train import log_windows, training_drives
from prediction import api
from prediction.config import PredictorConfig
from prediction.evaluate import evaluate_scene
from prediction.train import PredictionTrainConfig
from prediction.train import train as train_predictor
from prediction.windows import TrajectoryWindows
from sim.config import ConfigError
from sim.metrics.writers import atomic_write_text
from sim.training import write_json

SWEPT_STAGES = ("prediction",)  # pretrain, perception and end2end are not swept yet
# The whole-future mixture NLL, nats per step per agent: the likelihood the model's ELBO trains, and it
# rewards forecasts whose modes explain a whole future, not each step on its own ("nll_step").
OBJECTIVE = "nll_joint"
REDUCTION_FACTOR = 3  # Hyperband: a third of the trials of a rung go on to the next, 3x as long
SQLITE_TIMEOUT_S = 60  # how long a worker waits for another's write lock on the SQLite file
SETTINGS_ATTR = "sweep_settings"  # the study's user attr holding the settings its trials share
CLAIM_FILE = "sweep.json"  # names the study whose trials live in an out folder
BEST_FILE = "best.json"
TRIALS_FILE = "trials.csv"
# Loop fields a searched parameter may not set: the sweep itself drives them.
NOT_SEARCHABLE = frozenset(
    {"out", "steps", "checkpoint_every", "resume", "stop_at", "progress", "device", "seed", "wandb"}
)


# -- the search space ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dimension:
    """One searched field: a float range (log-uniform when `log`: rates and weights that span decades), or a
    list of `choices` (sizes)."""

    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[int | float, ...] = ()

    def suggest(self, trial: optuna.Trial, name: str) -> int | float:
        if self.choices:
            return trial.suggest_categorical(name, list(self.choices))
        return trial.suggest_float(name, self.low, self.high, log=self.log)


def log_uniform(low: float, high: float) -> Dimension:
    return Dimension(low, high, log=True)


def uniform(low: float, high: float) -> Dimension:
    return Dimension(low, high)


def one_of(*choices: int | float) -> Dimension:
    return Dimension(choices=tuple(choices))


# Field of PredictionTrainConfig (or predictor.<field> of its PredictorConfig) -> its range.
SEARCH_SPACE: dict[str, Dimension] = {
    "lr": log_uniform(3e-4, 1e-2),
    "batch_size": one_of(16, 32, 64),
    "kl_weight": log_uniform(0.1, 2.0),
    "kl_min": uniform(0.0, 0.3),
    "predictor.hidden": one_of(32, 64, 128),
}


def check_space(space: dict[str, Dimension]) -> None:
    """Every searched name is a field a trial may set, every range is non-empty (so a typo fails the sweep
    now, not every trial later)."""
    job = {f.name for f in fields(PredictionTrainConfig)} - NOT_SEARCHABLE - {"predictor"}
    predictor = {f"predictor.{f.name}" for f in fields(PredictorConfig)}
    if not space:
        raise ConfigError("search space: expected at least one field, got none")
    for name, dim in space.items():
        if name not in job | predictor:
            raise ConfigError(f"search space: {name!r} is not a searchable field of PredictionTrainConfig "
                              f"(or predictor.<field> of its PredictorConfig)")  # fmt: skip
        if not dim.choices and not dim.low < dim.high:
            raise ConfigError(f"search space: {name}: expected low < high, got [{dim.low}, {dim.high}]")
        if dim.log and not dim.low > 0:
            raise ConfigError(f"search space: {name}: a log-uniform range needs low > 0, got {dim.low}")


def suggest_params(trial: optuna.Trial, space: dict[str, Dimension]) -> dict[str, Any]:
    return {name: dim.suggest(trial, name) for name, dim in space.items()}


def apply_params(cfg: PredictionTrainConfig, params: dict[str, Any]) -> PredictionTrainConfig:
    """`cfg` with the sampled values: `name` sets the job's field, `predictor.name` the model's."""
    job = {name: value for name, value in params.items() if not name.startswith("predictor.")}
    model = {name.removeprefix("predictor."): value for name, value in params.items() if name.startswith("predictor.")}
    return replace(cfg, predictor=replace(cfg.predictor, **model), **job)


# -- settings ------------------------------------------------------------------------------------------------
def _require(cond: bool, name: str, expected: str, value: object) -> None:
    """An error naming the field and its command-line option."""
    if not cond:
        raise ConfigError(f"SweepSettings.{name} (--{name.replace('_', '-')}): expected {expected}, got {value!r}")


def check_storage_url(url: str) -> None:
    """A SQLAlchemy database URL whose dialect is installed (the driver itself is loaded on connecting)."""
    try:
        make_url(url).get_dialect()
    except ArgumentError as exc:  # also an unknown dialect (NoSuchModuleError)
        raise ConfigError(
            f"SweepSettings.storage (--storage): expected a database URL such as sqlite:///runs/sweep.db or "
            f"postgresql://user@host/db, got {url!r} ({exc})"
        ) from exc


@dataclass(frozen=True)
class SweepSettings:
    """One invocation of the sweep (the command-line options; see the module docstring).

    Attributes:
        logs: the drive log folder.
        out: the trials' folders, the default SQLite storage, best.json and trials.csv.
        trials: trials this invocation adds to the study, shared among its workers.
        workers: processes on this machine (one runs in this process).
        steps: optimiser steps of a trial that is never pruned (Hyperband's max resource).
        min_steps: the first rung (Hyperband's min resource); `steps` must be a multiple of it.
        storage: database URL of the study; None = sqlite:///<out>/sweep.db.
        study_name: the study in the storage; invocations with the same name join it.
        val_fraction: drives held out to score the trials (by a hash of their name).
        seed: the sampler's seed and every trial's training seed.
        predictor: "default" or "tiny" (tests, smoke runs): the model the searched fields change.
        stage: the stage swept; only "prediction" so far.
        device: torch device of training and scoring.
    """

    logs: Path
    out: Path
    trials: int = 20
    workers: int = 1
    steps: int = 900
    min_steps: int = 100
    storage: str | None = None
    study_name: str = "prediction-sweep"
    val_fraction: float = 0.2
    seed: int = 0
    predictor: str = "default"
    stage: str = "prediction"
    device: str = "cpu"

    def __post_init__(self) -> None:
        _require(self.stage in SWEPT_STAGES, "stage", f"one of {SWEPT_STAGES} (the other stages are not swept yet)",
                 self.stage)  # fmt: skip
        for name in ("trials", "workers", "steps", "min_steps"):
            value = getattr(self, name)
            _require(isinstance(value, int) and value >= 1, name, "an int >= 1", value)
        _require(self.min_steps <= self.steps, "min_steps", f"at most --steps ({self.steps})", self.min_steps)
        every_rung = f"a multiple of --min-steps ({self.min_steps}), so every rung ends on a checkpoint"
        _require(self.steps % self.min_steps == 0, "steps", every_rung, self.steps)
        _require(0 < self.val_fraction < 1, "val_fraction", "a number in (0, 1): trials are scored on held-out drives",
                 self.val_fraction)  # fmt: skip
        _require(isinstance(self.seed, int) and self.seed >= 0, "seed", "an int >= 0", self.seed)
        _require(self.predictor in ("default", "tiny"), "predictor", "'default' or 'tiny'", self.predictor)
        _require(bool(self.study_name), "study_name", "a non-empty name", self.study_name)
        if self.storage is not None:
            check_storage_url(self.storage)

    @property
    def rungs(self) -> list[int]:
        """The steps at which a trial is scored (and may be pruned): min_steps x 3^k below `steps`, then `steps`."""
        rungs, rung = [], self.min_steps
        while rung < self.steps:
            rungs.append(rung)
            rung *= REDUCTION_FACTOR
        return rungs + [self.steps]

    def storage_url(self) -> str:
        return self.storage or f"sqlite:///{Path(self.out).resolve()}/sweep.db"


def shown_url(url: str) -> str:
    """The storage URL without its password (it goes to the terminal and to best.json)."""
    return make_url(url).render_as_string(hide_password=True)


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The study's storage. SQLite: workers wait up to `SQLITE_TIMEOUT_S` for another's write lock instead of
    failing at once with "database is locked"."""
    if make_url(url).get_backend_name() == "sqlite":
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}})
    return optuna.storages.RDBStorage(url)


def default_pruner(settings: SweepSettings) -> optuna.pruners.BasePruner:
    return optuna.pruners.HyperbandPruner(
        min_resource=settings.min_steps, max_resource=settings.steps, reduction_factor=REDUCTION_FACTOR
    )


def study_identity(settings: SweepSettings, space: dict[str, Dimension]) -> dict[str, Any]:
    """What makes two invocations' trials comparable, as JSON (the study stores it on creation)."""
    identity = {
        "stage": settings.stage,
        "objective": OBJECTIVE,
        "steps": settings.steps,
        "min_steps": settings.min_steps,
        "predictor": settings.predictor,
        "val_fraction": settings.val_fraction,
        "space": {name: asdict(dim) for name, dim in space.items()},
    }
    return json.loads(json.dumps(identity))  # tuples as lists, as the storage returns them


# -- data ----------------------------------------------------------------------------------------------------
@dataclass
class SweepData:
    """The windows of one worker: `train` from the training drives, `validation` from the held-out ones."""

    train: TrajectoryWindows
    validation: TrajectoryWindows


def no_validation_error(settings: SweepSettings, drives: int) -> LogError:
    return LogError(
        f"log folder {settings.logs}: no validation drives: --val-fraction {settings.val_fraction} holds out none "
        f"of its {drives} drives (drives are held out by a hash of their name, so a small fraction of few drives "
        f"may hold out none); raise --val-fraction or record more drives"
    )


def check_split(settings: SweepSettings) -> None:
    """Fail before anything is written or trained when the logs give no validation or no training drive."""
    index = build_index(settings.logs)
    train, validation = split_drives(index.drives, settings.val_fraction)
    if not validation:
        raise no_validation_error(settings, len(index.drives))
    if not train:
        raise LogError(f"log folder {settings.logs}: no training drives: --val-fraction {settings.val_fraction} "
                       f"holds out all {len(index.drives)} drives; lower it or record more drives")  # fmt: skip


def load_data(settings: SweepSettings) -> SweepData:
    """The windows of both splits, cut once per worker (every trial reuses them)."""
    index = build_index(settings.logs, save=False)
    train, validation = split_drives(index.drives, settings.val_fraction)
    if not validation:
        raise no_validation_error(settings, len(index.drives))
    try:
        held_out = log_windows(index, validation)
    except LogError as exc:
        raise LogError(f"validation drives of {settings.logs}: {exc}") from exc
    if not bool(held_out.scored().any()):
        raise LogError(f"validation drives of {settings.logs}: no agent is seen over a whole window, nothing "
                       f"to score the trials on; raise --val-fraction or record longer drives")  # fmt: skip
    return SweepData(log_windows(index, train), held_out)


# -- one trial -----------------------------------------------------------------------------------------------
def trial_folder(out: Path, number: int) -> Path:
    return Path(out) / f"trial-{number:04d}"


def base_config(settings: SweepSettings, out: Path) -> PredictionTrainConfig:
    """A trial's job before its sampled values. The warm-up and KL annealing are capped to the trial's budget
    (the job's defaults are sized for 3000 steps); every trial trains with the same seed, so trials differ by
    their values, not their data order."""
    defaults = PredictionTrainConfig()
    return PredictionTrainConfig(
        out=out,
        predictor=PredictorConfig.tiny() if settings.predictor == "tiny" else PredictorConfig(),
        steps=settings.steps,
        checkpoint_every=settings.min_steps,  # every rung is a multiple of it: each segment ends on a checkpoint
        warmup_steps=min(defaults.warmup_steps, settings.steps // 10),
        kl_anneal_steps=min(defaults.kl_anneal_steps, settings.steps // 2),
        seed=settings.seed,
        progress=False,
        device=settings.device,
    )


def score(checkpoint: Path, windows: TrajectoryWindows, device: str) -> dict[str, float]:
    """Averaged metrics of the model in `checkpoint` over the scored agents of `windows` (no KDE: slow)."""
    scores = evaluate_scene(api.load(checkpoint, device), windows, kde_samples=0)
    if not math.isfinite(scores[OBJECTIVE]):
        raise ValueError(f"checkpoint {checkpoint}: validation {OBJECTIVE} is not finite ({scores[OBJECTIVE]})")
    return scores


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def train_and_score(
    trial: optuna.Trial, settings: SweepSettings, data: SweepData, space: dict[str, Dimension]
) -> float:
    """Train the trial rung by rung, report each rung's validation score, and stop when the pruner says so."""
    cfg = apply_params(base_config(settings, trial_folder(settings.out, trial.number)), suggest_params(trial, space))
    value = math.nan  # rungs always hold `steps`: the loop runs at least once
    for i, rung in enumerate(settings.rungs):
        # The first segment refuses a folder that already holds checkpoints (another study's trial).
        checkpoint = train_predictor(replace(cfg, stop_at=rung, resume=i > 0), data.train)
        scores = score(checkpoint, data.validation, settings.device)
        value = scores[OBJECTIVE]
        trial.set_user_attr("steps", rung)
        trial.set_user_attr("checkpoint", str(checkpoint))
        trial.set_user_attr("min_ade", scores["min_ade"])
        trial.report(value, rung)
        if rung < settings.steps and trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {rung}: {OBJECTIVE} {value:.4f}")
    return value


def make_objective(
    settings: SweepSettings, data: SweepData, space: dict[str, Dimension]
) -> Callable[[optuna.Trial], float]:
    """The objective one worker hands Optuna: every trial records which process ran it (workers on several
    machines share a study) and, when it fails, why."""

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker_name())
        trial.set_user_attr("steps", 0)
        try:
            return train_and_score(trial, settings, data, space)
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # optuna records the trial as FAIL; keep why in the study, for trials.csv
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            raise

    return objective


# -- workers -------------------------------------------------------------------------------------------------
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


# -- the study -----------------------------------------------------------------------------------------------
def check_out_folder(out: Path, study_name: str) -> None:
    """One study per out folder: trial folders are named by trial number, which restarts in every study (the
    folder is claimed, in `CLAIM_FILE`, when the sweep starts)."""
    claim = out / CLAIM_FILE
    owner = json.loads(claim.read_text()).get("study") if claim.is_file() else study_name
    if owner != study_name:
        raise ConfigError(f"SweepSettings.study_name (--study-name): {out} holds the trials of study {owner!r}, "
                          f"got {study_name!r}; choose another --out")  # fmt: skip


OPTION_OF = {"space": "the search space", "objective": "the objective"}


def create_or_join(settings: SweepSettings, space: dict[str, Dimension]) -> optuna.Study:
    """The study, created on first use; a study created with other settings is refused, naming the first
    that differs (its trials would not be comparable with ours)."""
    study = optuna.create_study(
        storage=open_storage(settings.storage_url()),
        study_name=settings.study_name,
        direction="minimize",
        load_if_exists=True,
    )
    if study.direction != optuna.study.StudyDirection.MINIMIZE:
        raise ConfigError(f"SweepSettings.study_name (--study-name): study {settings.study_name!r} maximises; "
                          f"the sweep minimises {OBJECTIVE}")  # fmt: skip
    ours, recorded = study_identity(settings, space), study.user_attrs.get(SETTINGS_ATTR)
    if recorded is None:
        study.set_user_attr(SETTINGS_ATTR, ours)
        return study
    for name, value in ours.items():
        if recorded.get(name) != value:
            option = OPTION_OF.get(name, f"--{name.replace('_', '-')}")
            raise ConfigError(f"SweepSettings.{name} ({option}): study {settings.study_name!r} was created with "
                              f"{recorded.get(name)!r}, got {value!r}; use another --study-name")  # fmt: skip
    return study


@dataclass
class SweepResult:
    """What a sweep leaves: every trial of the study as a row, the best one (None before any completes), and
    the workers that exited with an error."""

    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    failed_workers: list[int] = field(default_factory=list)


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


# -- results -------------------------------------------------------------------------------------------------
def trial_rows(study: optuna.Study, space: dict[str, Dimension]) -> list[dict[str, Any]]:
    """One row per trial of the study: number, state, value (a pruned trial's is its last reported one), steps
    trained, worker, parameters, minADE, model file and error."""
    rows, names = [], param_names(study, space)
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        attrs = trial.user_attrs
        rows.append({
            "number": trial.number,
            "state": trial.state.name,
            "value": trial.value,
            "steps": attrs.get("steps", 0),
            "worker": attrs.get("worker", ""),
            **{name: trial.params.get(name) for name in names},
            "min_ade": attrs.get("min_ade"),
            "checkpoint": attrs.get("checkpoint", ""),
            "error": attrs.get("error", ""),
        })  # fmt: skip
    return rows


def param_names(study: optuna.Study, space: dict[str, Dimension]) -> list[str]:
    """The searched names in table order, then any the study's older trials searched besides."""
    seen = {name for trial in study.get_trials(deepcopy=False) for name in trial.params}
    return list(space) + sorted(seen - set(space))


def best_record(study: optuna.Study, storage: str) -> dict[str, Any] | None:
    """best.json: the completed trial with the lowest validation score, or None before any completes."""
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return None
    best = study.best_trial
    return {
        "study": study.study_name,
        "storage": shown_url(storage),
        "objective": OBJECTIVE,
        "value": best.value,
        "trial": best.number,
        "params": best.params,
        "checkpoint": best.user_attrs.get("checkpoint"),
        "worker": best.user_attrs.get("worker"),
        "min_ade": best.user_attrs.get("min_ade"),
        "steps": best.user_attrs.get("steps"),
    }


def trials_csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return text.getvalue()


def write_results(out: Path, result: SweepResult) -> None:
    """trials.csv always; best.json once a trial has completed (the study only grows, so an earlier best.json
    of the same study is never wrong, only possibly bettered)."""
    atomic_write_text(out / TRIALS_FILE, trials_csv(result.rows))
    if result.best is not None:
        write_json(out / BEST_FILE, result.best)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 else f"{value:.4f}"
    return str(value)


def format_table(rows: list[dict[str, Any]], space: dict[str, Dimension]) -> str:
    """The trials as a fixed-width table (the numbers of trials.csv, rounded)."""
    columns = ["number", "state", "value", "steps", "worker", *space, "min_ade"]
    cells = [[_cell(row.get(name)) for name in columns] for row in rows]
    widths = [max(len(name), *(len(c[i]) for c in cells)) if cells else len(name) for i, name in enumerate(columns)]
    lines = ["  ".join(name.rjust(w) for name, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


# -- command line --------------------------------------------------------------------------------------------
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
    p.add_argument("--seed", type=int, default=d.seed, help="sampler seed and every trial's training seed")
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
    """0 when a trial of the study has completed and every worker finished cleanly, else 1."""
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
    return 0 if not result.failed_workers else 1
