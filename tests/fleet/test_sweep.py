"""`drivestack fleet sweep`: trials scored on held-out drives at their rungs, pruning, workers sharing a study."""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from fleet import sweep as fs
from fleet.index import build_index, split_drives
from fleet.recorder import record_drives
from fleet.train import log_windows
from prediction import api
from prediction.evaluate import evaluate_scene
from sim.checkpoint import load_checkpoint
from sim.config import ConfigError
from sim.policies import make_policy
from sim.scenarios import load_scenario, scenario_path
from sim.training import latest_checkpoint

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


def test_a_study_created_with_other_settings_or_another_study_in_the_folder_is_refused(small_sweep):
    settings, _ = small_sweep
    with pytest.raises(ConfigError, match="--steps"):
        fs.sweep(replace(settings, steps=6))
    with pytest.raises(ConfigError, match="--study-name"):
        fs.sweep(replace(settings, study_name="another"))
    assert len(load_study(settings.out).trials) == 3


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
