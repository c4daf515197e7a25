"""`drivestack fleet sweep`: trials scored on held-out drives at their rungs, pruning, workers sharing a study."""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import torch

from core.checkpoint import load_checkpoint
from core.config import ConfigError
from core.training import latest_checkpoint
from fleet import sweep as fs
from fleet.sweep import run as sweep_run
from fleet.sweep import trial as sweep_trial
from fleet.sweep import workers as sweep_workers
from fleet.sweep.study import default_pruner
from prediction import api
from prediction.evaluate import evaluate_scene
from prediction.logwindows import log_windows
from prediction.train import kl_beta
from sim.drivelogs.index import build_index, split_drives
from sim.drivelogs.recorder import record_drives
from sim.policies import make_policy
from sim.scenarios import load_scenario, scenario_path

VAL_FRACTION = 0.5  # holds out cut_in-000001 of the three drives, trains on the other two


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep-logs")
    scenario = load_scenario(scenario_path("cut_in")).with_overrides({"duration": 8.0})  # one prediction window
    record_drives(scenario, [0, 1, 2], make_policy("pdm-gt"), out)
    return out


def small_settings(logs: Path, out: Path, **changes) -> fs.SweepSettings:
    base = dict(logs=logs, out=out, trials=3, workers=1, steps=4, min_steps=2, val_fraction=VAL_FRACTION,
                predictor="tiny")  # fmt: skip
    return fs.SweepSettings(**{**base, **changes})


@pytest.fixture(scope="module")
def small_sweep(logs, tmp_path_factory):
    settings = small_settings(logs, tmp_path_factory.mktemp("sweep"))
    return settings, fs.sweep(settings)


def load_study(out: Path, name: str = "prediction-sweep") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out}/sweep.db")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def cli(*argv: str) -> argparse.Namespace:
    """The `sweep` subcommand parsed as `drivestack fleet sweep` would parse it."""
    parser = argparse.ArgumentParser()
    fs.add_parser(parser.add_subparsers())
    return parser.parse_args(["sweep", *argv])


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


def test_every_trial_is_scored_at_its_rungs_within_the_search_space(small_sweep):
    settings, _ = small_sweep
    trials = load_study(settings.out).trials
    assert [t.number for t in trials] == [0, 1, 2]
    assert trials[0].state == optuna.trial.TrialState.COMPLETE  # alone at its rung: nothing to prune it against
    for trial in trials:
        reached = [2, 4] if trial.state == optuna.trial.TrialState.COMPLETE else [2]
        assert trial.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        assert sorted(trial.intermediate_values) == reached
        assert trial.value == trial.intermediate_values[reached[-1]]
        assert trial.user_attrs["steps"] == reached[-1] and trial.user_attrs["min_ade"] > 0
        for name, dim in fs.SEARCH_SPACE.items():
            value = trial.params[name]
            assert value in dim.choices if dim.choices else dim.low <= value <= dim.high


def test_best_json_and_trials_csv_agree_with_the_study_and_score_the_held_out_drives(small_sweep, logs):
    settings, result = small_sweep
    study = load_study(settings.out)
    best = json.loads((settings.out / "best.json").read_text())
    assert best == result.best
    assert (best["trial"], best["value"], best["params"]) == (study.best_trial.number, study.best_value,
                                                              study.best_trial.params)  # fmt: skip
    assert best["checkpoint"] == str(settings.out.resolve() / f"trial-{best['trial']:04d}" / "final.safetensors")
    # The value is the best model's mixture NLL on the windows of the validation drive, and of no other.
    index = build_index(logs, save=False)
    train, validation = split_drives(index.drives, VAL_FRACTION)
    assert [d.drive for d in validation] == ["cut_in-000001"] and len(train) == 2
    model = api.load(best["checkpoint"])
    assert model.model.cfg.hidden == best["params"]["predictor.hidden"]
    held_out = evaluate_scene(model, log_windows(index, validation), kde_samples=0)
    assert held_out[fs.OBJECTIVE] == pytest.approx(best["value"], rel=1e-6)
    assert evaluate_scene(model, log_windows(index, train), kde_samples=0)[fs.OBJECTIVE] != pytest.approx(best["value"])
    manifest = json.loads((settings.out / "drives.json").read_text())
    assert manifest["validation"] == ["cut_in-000001"]
    rows = read_csv(settings.out / "trials.csv")
    assert [(int(r["number"]), r["state"], float(r["value"]), int(r["steps"]), r["worker"]) for r in rows] == [
        (t.number, t.state.name, t.value, t.user_attrs["steps"], t.user_attrs["worker"]) for t in study.trials
    ]
    assert [float(r["lr"]) for r in rows] == [t.params["lr"] for t in study.trials]


def test_a_pruned_trial_stops_training_at_its_first_rung(logs, tmp_path):
    result = fs.sweep(small_settings(logs, tmp_path, trials=2), pruner=AlwaysPrune())
    trials = load_study(tmp_path).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.PRUNED] * 2
    for trial in trials:
        folder = tmp_path / f"trial-{trial.number:04d}"
        assert sorted(trial.intermediate_values) == [2] and trial.user_attrs["steps"] == 2
        assert load_checkpoint(latest_checkpoint(folder)).meta["step"] == 2
        assert not (folder / "final.safetensors").exists()
    assert result.best is None and not (tmp_path / "best.json").exists()
    assert [r["state"] for r in read_csv(tmp_path / "trials.csv")] == ["PRUNED", "PRUNED"]


def test_a_failing_trial_is_recorded_as_failed_and_the_sweep_goes_on(logs, tmp_path):
    space = {"kl_min": fs.one_of(-1.0)}  # PredictionTrainConfig refuses it: every trial fails
    result = fs.sweep(small_settings(logs, tmp_path, trials=2), space=space)
    assert [t.state for t in load_study(tmp_path).trials] == [optuna.trial.TrialState.FAIL] * 2
    assert result.best is None
    rows = read_csv(tmp_path / "trials.csv")
    assert [r["state"] for r in rows] == ["FAIL", "FAIL"] and all("kl_min" in r["error"] for r in rows)


def test_two_workers_share_the_study_and_a_second_call_joins_it(logs, tmp_path, capsys):
    # One rung (min steps = steps): no trial can be pruned, so both of the first call complete.
    common = ["--logs", str(logs), "--out", str(tmp_path), "--steps", "2", "--min-steps", "2",
              "--val-fraction", str(VAL_FRACTION), "--predictor", "tiny"]  # fmt: skip
    args = cli(*common, "--trials", "2", "--workers", "2")
    assert args.run(args) == 0
    first = load_study(tmp_path).trials
    assert [t.state for t in first] == [optuna.trial.TrialState.COMPLETE] * 2
    workers = {t.user_attrs["worker"] for t in first}
    assert len(workers) == 2 and f"{socket.gethostname()}:{os.getpid()}" not in workers  # two spawned processes
    args = cli(*common, "--trials", "1", "--workers", "1")
    assert args.run(args) == 0
    trials = load_study(tmp_path).trials
    assert [t.number for t in trials] == [0, 1, 2] and trials[2].state == optuna.trial.TrialState.COMPLETE
    assert trials[2].user_attrs["worker"] == f"{socket.gethostname()}:{os.getpid()}"  # one worker: this process
    assert len(read_csv(tmp_path / "trials.csv")) == 3
    assert "3 trials in study 'prediction-sweep'" in capsys.readouterr().out


def test_a_study_created_with_other_settings_or_drives_or_another_study_in_the_folder_is_refused(small_sweep, tmp_path):
    settings, _ = small_sweep
    with pytest.raises(ConfigError, match="--steps"):
        fs.sweep(replace(settings, steps=6))
    with pytest.raises(ConfigError, match="--seed"):
        fs.sweep(replace(settings, seed=1))
    fewer = tmp_path / "logs"  # the validation drive and one of the two training drives
    fewer.mkdir()
    for name in ("cut_in-000000.mcap", "cut_in-000001.mcap"):
        shutil.copy(settings.logs / name, fewer / name)
    with pytest.raises(ConfigError, match="--logs"):
        fs.sweep(replace(settings, logs=fewer))
    with pytest.raises(ConfigError, match="--study-name"):
        fs.sweep(replace(settings, study_name="another"))
    assert len(load_study(settings.out).trials) == 3


def one_trial(logs: Path, out: Path) -> list[str]:
    """The options of a sweep of one unprunable trial of 2 steps."""
    return ["--logs", str(logs), "--out", str(out), "--trials", "1", "--steps", "2", "--min-steps", "2",
            "--val-fraction", str(VAL_FRACTION), "--predictor", "tiny"]  # fmt: skip


def test_a_new_study_in_a_folder_holding_another_studys_trials_is_refused(logs, tmp_path):
    args = cli(*one_trial(logs, tmp_path))
    assert args.run(args) == 0
    claim = json.loads((tmp_path / "sweep.json").read_text())
    assert claim == {"study": "prediction-sweep", "storage": f"sqlite:///{tmp_path}/sweep.db",
                     "uuid": load_study(tmp_path).user_attrs["sweep_uuid"]}  # fmt: skip
    (tmp_path / "sweep.db").unlink()  # a new study of the same name would number its trials from 0 again
    with pytest.raises(ConfigError, match=f"--out.*uuid {claim['uuid']}"):
        args.run(args)
    (tmp_path / "sweep.json").write_text(json.dumps({"study": "prediction-sweep"}))  # a claim without a uuid
    with pytest.raises(ConfigError, match="--out"):
        args.run(args)
    (tmp_path / "sweep.json").unlink()  # no claim: the trial folder tells
    with pytest.raises(ConfigError, match="--out"):
        args.run(args)
    assert sorted(p.name for p in tmp_path.glob("trial-*")) == ["trial-0000"]


def test_an_invocation_whose_trials_all_failed_fails_though_the_study_has_a_best(logs, tmp_path, monkeypatch, capsys):
    args = cli(*one_trial(logs, tmp_path))
    assert args.run(args) == 0

    def broken(*_args, **_kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(sweep_trial, "train_predictor", broken)
    assert args.run(args) == 1
    assert [t.state.name for t in load_study(tmp_path).trials] == ["COMPLETE", "FAIL"]
    assert "none of the 1 trials of this invocation completed or was pruned" in capsys.readouterr().out


def test_only_an_invocation_that_creates_the_study_seeds_its_samplers_from_seed_alone(logs, tmp_path, monkeypatch):
    ran: list[list[sweep_workers.WorkerJob]] = []
    monkeypatch.setattr(sweep_run, "run_workers", lambda jobs: ran.append(list(jobs)) or [])
    settings = small_settings(logs, tmp_path, trials=3, workers=2)
    fs.sweep(settings)
    fs.sweep(settings)  # a second terminal, a second machine: joins
    assert [[(j.index, j.workers, j.trials, j.joining) for j in jobs] for jobs in ran] == [
        [(0, 2, 2, False), (1, 2, 1, False)],
        [(0, 2, 2, True), (1, 2, 1, True)],
    ]
    assert ran[0][0].invocation != ran[1][0].invocation
    seed = sweep_workers.worker_seed
    assert seed(0, 0) == seed(0, 0) != seed(0, 1) != seed(1, 1)  # created: reproducible, per worker
    # Joining, two invocations started together (same seed, same worker index) differ by their process.
    assert len({seed(0, 0), seed(0, 0, "host:100"), seed(0, 0, "host:101"), seed(0, 0, "other:100")}) == 4


def random_trials(sampler: optuna.samplers.TPESampler, settings: fs.SweepSettings, trials: int) -> list[int]:
    """The numbers of the trials TPE drew at random (its random sampler, before it models anything), in a
    study of the default name pruned by the sweep's Hyperband, on a stand-in objective."""
    drawn = []
    random_draw = sampler._random_sampler.sample_independent  # private: how else to tell a random draw

    def spy(study, trial, name, distribution):
        drawn.append(trial.number)
        return random_draw(study, trial, name, distribution)

    sampler._random_sampler.sample_independent = spy

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        for rung in settings.rungs:
            trial.report(x + 1 / rung, rung)
            if rung < settings.steps and trial.should_prune():
                raise optuna.TrialPruned()
        return x

    pruner = default_pruner(settings)
    study = optuna.create_study(study_name="prediction-sweep", sampler=sampler, pruner=pruner)
    study.optimize(objective, n_trials=trials)
    return sorted(set(drawn))


def test_tpe_models_the_trials_after_a_few_random_ones(logs, tmp_path):
    # The benchmark's settings (docs/benchmarks.md): 12 trials, rungs at 30, 90 and 270 steps, 3 brackets.
    settings = fs.SweepSettings(logs=logs, out=tmp_path, trials=12, steps=270, min_steps=30)
    assert settings.brackets == 3 and sweep_workers.startup_trials(settings, AlwaysPrune()) == 10
    pruner = default_pruner(settings)
    assert random_trials(sweep_workers.make_sampler(settings, pruner, 0), settings, 12) == [0, 1, 2]
    # Optuna's default, as the benchmark ran: 10 of the 12 at random. Optuna 5.0.0 counts the study's trials
    # (its docs: each bracket's, which would have made all 12 random).
    assert random_trials(optuna.samplers.TPESampler(seed=0), settings, 12) == list(range(10))
    one_bracket = replace(settings, steps=60)
    assert one_bracket.brackets == 1 and sweep_workers.startup_trials(one_bracket, pruner) == 10


def test_the_kl_term_is_fully_weighted_at_the_first_rung(logs, tmp_path):
    settings = fs.SweepSettings(logs=logs, out=tmp_path)
    cfg = sweep_trial.base_config(settings, tmp_path)
    assert kl_beta(settings.min_steps, cfg) > 0.99 * cfg.kl_weight


def test_workers_share_the_threads_and_a_lone_worker_keeps_them(logs, tmp_path, monkeypatch):
    seen = []

    def stop(settings):
        seen.append(torch.get_num_threads())
        raise RuntimeError("stop")

    monkeypatch.setattr(sweep_workers, "load_data", stop)
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        for workers in (1, 2, 8):
            job = sweep_workers.WorkerJob(small_settings(logs, tmp_path), 0, workers, 1, fs.SEARCH_SPACE)
            with pytest.raises(RuntimeError, match="stop"):
                sweep_workers.run_worker(job)
            assert torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(threads)
    assert seen == [4, 2, 1]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (["--trials", "0"], "--trials"),
        (["--workers", "0"], "--workers"),
        (["--steps", "4", "--min-steps", "8"], "--min-steps"),
        (["--steps", "5", "--min-steps", "2"], "--steps"),
        (["--storage", "not a url"], "--storage"),
        (["--storage", "nosuchdb://host/x"], "--storage"),
        (["--val-fraction", "0"], "--val-fraction"),
    ],
)
def test_bad_arguments_name_the_field(options, field, logs, tmp_path):
    args = cli("--logs", str(logs), "--out", str(tmp_path / "out"), *options)
    with pytest.raises(ConfigError, match=field):
        args.run(args)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_too_few_drives_for_a_validation_drive_says_so(logs, tmp_path):
    args = cli("--logs", str(logs), "--out", str(tmp_path / "out"), "--val-fraction", "0.2")  # holds out none of 3
    with pytest.raises(ValueError, match="no validation drives: --val-fraction 0.2 holds out none of its 3 drives"):
        args.run(args)
    assert not (tmp_path / "out").exists()


def test_only_the_prediction_stage_is_swept(capsys):
    with pytest.raises(SystemExit):
        cli("--logs", "logs", "--out", "out", "--stage", "perception")
    assert "--stage" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="not swept yet"):
        fs.SweepSettings(logs=Path("logs"), out=Path("out"), stage="perception")
