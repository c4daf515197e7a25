"""Federated averaging across simulated vehicles: the server step, the drives each vehicle gets, the wiring against
centralised training, resuming a killed run, the command line."""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace

import pytest
import torch

import fleet.federated as federated
import fleet.federated.rounds as federated_rounds
from core.config import ConfigError
from core.training import FINAL_NAME
from fleet.federated import (
    FederatedConfig,
    add_parser,
    assign_drives,
    average_weights,
    centralised_rounds_config,
    centralised_rounds_train,
    centralised_train,
    federated_train,
    make_fleet,
    read_split,
)
from prediction.checkpoint import load_predictor
from prediction.config import PredictorConfig
from prediction.logwindows import log_windows
from prediction.train import train
from sim.drivelogs.format import DriveLogWriter, read_drive
from sim.drivelogs.index import build_index
from sim.drivelogs.recorder import record_drives
from sim.policies import make_policy
from sim.scenarios import load_scenario, scenario_path

# Drive names hash so that val_fraction 0.4 holds out cut_in-000001 only, and two vehicles by hash get
# {cut_in-000000, cut_in-000002, lead_brake-000001} and {cut_in-000003}.
DRIVES = {"cut_in": [0, 1, 2, 3], "lead_brake": [1]}
VAL_FRACTION = 0.4


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    out = tmp_path_factory.mktemp("federated-logs")
    for scenario, seeds in DRIVES.items():
        # 79 steps and the final state: 20 samples, one prediction window
        short = load_scenario(scenario_path(scenario)).with_overrides({"duration": 7.9})
        record_drives(short, seeds, make_policy("pdm-gt"), out)
    return out


@pytest.fixture(scope="module")
def split(logs):
    return read_split(logs, VAL_FRACTION)


def small(out, **changes) -> FederatedConfig:
    base = dict(out=out, vehicles=2, rounds=2, local_steps=2, batch_size=4, predictor=PredictorConfig.tiny(),
                val_fraction=VAL_FRACTION, eval_samples=4)  # fmt: skip
    return FederatedConfig(**{**base, **changes})


def weights_of(path):
    model, _ = load_predictor(path)
    return model.state_dict()


def without_seconds(rounds):
    """The rounds log without its timings (the only part a resumed run may change)."""
    return [
        {**{k: v for k, v in r.items() if k != "seconds"},
         "vehicles": [{k: v for k, v in vehicle.items() if k != "seconds"} for vehicle in r["vehicles"]]}
        for r in rounds
    ]  # fmt: skip


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# --- the server step ------------------------------------------------------------------------------


def test_average_weights_is_the_sample_weighted_mean():
    first = {"w": torch.tensor([0.0, 2.0]), "half": torch.tensor([1.0], dtype=torch.float16), "count": torch.tensor(7)}
    second = {"w": torch.tensor([4.0, 6.0]), "half": torch.tensor([5.0], dtype=torch.float16), "count": torch.tensor(7)}
    averaged = average_weights([first, second], [1, 3])  # weights 1/4 and 3/4
    assert torch.equal(averaged["w"], torch.tensor([3.0, 5.0]))
    assert torch.equal(averaged["half"], torch.tensor([4.0], dtype=torch.float16))
    assert torch.equal(averaged["count"], torch.tensor(7)) and averaged["count"].dtype == torch.int64
    third = {"w": torch.tensor([1.0, 1.0]), "half": torch.tensor([1.0], dtype=torch.float16), "count": torch.tensor(7)}
    assert torch.equal(average_weights([first, second, third], [1, 1, 2])["w"], torch.tensor([1.5, 2.5]))


def test_average_weights_refuses_what_it_cannot_average():
    a, b = {"w": torch.ones(2), "count": torch.tensor(1)}, {"w": torch.zeros(2), "count": torch.tensor(2)}
    with pytest.raises(ValueError, match="count.*cannot be averaged"):
        average_weights([a, b], [1, 1])
    with pytest.raises(ValueError, match="counts"):
        average_weights([a, a], [1, 0])
    with pytest.raises(ValueError, match="other tensors"):
        average_weights([a, {"w": torch.ones(2)}], [1, 1])


# --- the drives of each vehicle -------------------------------------------------------------------


@pytest.mark.parametrize("assign", ["hash", "scenario"])
def test_vehicles_get_training_drives_only_and_windows_of_their_own_drives(split, tmp_path, assign):
    validation = {d.drive for d in split.validation}
    train = [d.drive for d in split.train]
    assert validation == {"cut_in-000001"} and len(train) == 4
    fleet = make_fleet(split, small(tmp_path, assign=assign))
    dealt = [drive for vehicle in fleet for drive in vehicle.drives]
    assert sorted(dealt) == sorted(train)  # each training drive on exactly one vehicle, no validation drive
    by_name = {d.drive: d for d in split.train}
    for vehicle in fleet:
        own = log_windows(split.index, [by_name[name] for name in vehicle.drives])  # read again from the logs
        assert vehicle.num_windows == own.batch_size > 0
        for name in type(own).field_names():
            assert torch.equal(getattr(vehicle.windows, name), getattr(own, name)), name
    again = make_fleet(split, small(tmp_path, assign=assign))
    assert [v.drives for v in again] == [v.drives for v in fleet]  # deterministic


def test_assignment_by_hash_and_by_scenario(split):
    by_hash = [[d.drive for d in drives] for drives in assign_drives(split.train, 2, "hash")]
    assert by_hash == [["cut_in-000000", "cut_in-000002", "lead_brake-000001"], ["cut_in-000003"]]
    fewer = [[d.drive for d in drives] for drives in assign_drives(split.train[1:], 2, "hash")]
    assert fewer == [["cut_in-000002", "lead_brake-000001"], ["cut_in-000003"]]  # a drive never moves
    by_family = [[d.drive for d in drives] for drives in assign_drives(split.train, 2, "scenario")]
    assert by_family == [["cut_in-000000", "cut_in-000002", "cut_in-000003"], ["lead_brake-000001"]]


def test_a_vehicle_without_drives_is_an_error(split):
    with pytest.raises(ConfigError, match=r"FederatedConfig\.vehicles: vehicle\(s\) \[.*\] get no training drive"):
        assign_drives(split.train, 5, "hash")  # 4 drives, 5 vehicles
    with pytest.raises(ConfigError, match=r"FederatedConfig\.vehicles: .*scenario family per vehicle"):
        assign_drives(split.train, 3, "scenario")  # 2 families


# --- the rounds -----------------------------------------------------------------------------------


def test_one_vehicle_for_one_round_is_centralised_training(logs, split, tmp_path):
    cfg = small(tmp_path, vehicles=1, rounds=1, local_steps=3)
    result = federated_train(logs, cfg, split=split)
    central = centralised_train(logs, cfg, split=split)
    assert result.finished and len(result.rounds) == 1
    assert_same_weights(weights_of(result.model), weights_of(tmp_path / "centralised" / FINAL_NAME))
    assert result.rounds[0]["validation"] == central[0]["validation"]
    assert result.rounds[0]["samples"] == central[0]["samples"] == 3 * 4
    trained, initial = weights_of(result.model), federated.initial_weights(cfg)
    assert any(not torch.equal(trained[name], initial[name]) for name in initial)  # it did train


def test_a_round_is_the_window_weighted_mean_of_the_vehicles_own_training(logs, split, tmp_path):
    cfg = small(tmp_path / "fedavg", rounds=1)
    result = federated_train(logs, cfg, split=split)
    fleet = make_fleet(split, cfg)
    counts = [vehicle.num_windows for vehicle in fleet]
    assert counts == [3, 1]  # one window per 8 s drive
    start, local = federated.initial_weights(cfg), []
    for vehicle in fleet:  # each vehicle's round by hand: the training loop on its windows from the start weights
        seed = federated.local_seed(cfg.seed, 1, vehicle.number, cfg.vehicles)
        local.append(weights_of(train(cfg.local_config(tmp_path / f"by-hand-{vehicle.number}", seed),
                                      vehicle.windows, initial=start)))  # fmt: skip
    assert any(not torch.equal(local[0][name], local[1][name]) for name in start)
    for name, value in weights_of(result.model).items():
        expected = (3 * local[0][name].double() + 1 * local[1][name].double()) / 4
        assert torch.equal(value, expected.float()), name


def test_a_killed_run_resumes_and_ends_as_one_that_ran_through(logs, split, tmp_path, monkeypatch):
    through = federated_train(logs, small(tmp_path / "through"), split=split)
    assert through.finished and [r["round"] for r in through.rounds] == [1, 2]

    out = tmp_path / "killed"
    stopped = federated_train(logs, small(out, stop_after_round=1), split=split)
    assert not stopped.finished and len(stopped.rounds) == 1
    real_train, calls = federated_rounds.train_predictor, []

    def killed_in_the_second_vehicle(cfg, extra=None, *, initial=None):
        calls.append(cfg.out)
        path = real_train(cfg, extra, initial=initial)  # its checkpoints stay behind, as after a kill
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return path

    monkeypatch.setattr(federated_rounds, "train_predictor", killed_in_the_second_vehicle)
    with pytest.raises(KeyboardInterrupt):
        federated_train(logs, small(out, resume=True), split=split)
    monkeypatch.undo()
    assert len(json.loads((out / "rounds.json").read_text())["rounds"]) == 1  # round 2 never finished
    with pytest.raises(ValueError, match="pass --resume"):
        federated_train(logs, small(out), split=split)
    with pytest.raises(ValueError, match="--resume: lr is"):
        federated_train(logs, small(out, resume=True, lr=1e-3), split=split)
    fewer = replace(split, train=split.train[:-1])  # lead_brake-000001 has left --logs since
    with pytest.raises(
        ValueError, match=r"--resume: the drives .* vehicle 0 added \[\], removed \['lead_brake-000001'\]"
    ):
        federated_train(logs, small(out, resume=True), split=fewer)
    renamed = replace(split.validation[0], drive="elsewhere-000001")  # --logs points at another folder
    elsewhere = replace(
        split, validation=[renamed], windows={**split.windows, renamed.drive: split.windows["cut_in-000001"]}
    )
    with pytest.raises(ValueError, match=r"validation added \['elsewhere-000001'\], removed \['cut_in-000001'\]"):
        federated_train(logs, small(out, resume=True), split=elsewhere)
    resumed = federated_train(logs, small(out, resume=True), split=split)
    assert resumed.finished
    assert_same_weights(weights_of(resumed.model), weights_of(through.model))
    assert without_seconds(resumed.rounds) == without_seconds(through.rounds)  # scores, seeds, local losses


def test_a_damaged_drive_is_reported_broken_and_never_trained_or_scored_on(logs, tmp_path):
    folder = tmp_path / "logs"
    shutil.copytree(logs, folder)
    source = build_index(logs).drives[0]
    metadata = {k: v for k, v in source.metadata.items() if k not in ("drive", "format")}
    damaged = DriveLogWriter(folder / "damaged.mcap", "damaged-000000", metadata)  # both names hash to training
    short = DriveLogWriter(folder / "short.mcap", "short-000000", metadata)
    with damaged, short:
        for r in read_drive(logs / source.file):
            if not (r.topic == "/agents/truth" and 0.95 < r.time_s < 1.05):  # one frame's agents dropped
                damaged.write(r.topic, r.time_s, r.tensors)
            if r.time_s < 4.0:  # too short for a window
                short.write(r.topic, r.time_s, r.tensors)
    split = read_split(folder, VAL_FRACTION)
    assert list(split.broken) == ["damaged.mcap"] and "/agents/truth" in split.broken["damaged.mcap"]
    assert "damaged-000000" not in [d.drive for d in [*split.train, *split.validation]]
    assert "short-000000" in [d.drive for d in split.train] and "short-000000" not in split.windows
    out = tmp_path / "run"
    federated_train(folder, small(out, rounds=1, local_steps=1), split=split)
    manifest = json.loads((out / "drives.json").read_text())
    assert list(manifest["broken"]) == ["damaged.mcap"]
    assert "damaged-000000" not in [d["drive"] for d in manifest["train"]] + manifest["validation"]
    rounds = json.loads((out / "rounds.json").read_text())
    assert (
        [v["drives"] for v in rounds["vehicles"]]
        == manifest["vehicles"]
        == [["cut_in-000000", "cut_in-000002", "lead_brake-000001"], ["cut_in-000003", "short-000000"]]
    )
    assert [v["windows"] for v in rounds["vehicles"]] == [3, 1]  # the short drive holds none


def test_the_centralised_training_seconds_add_up_over_its_sessions(logs, split, tmp_path):
    centralised_train(logs, small(tmp_path, vehicles=1, local_steps=1, stop_after_round=1), split=split)
    first = json.loads((tmp_path / "centralised.json").read_text())["train_seconds"]
    centralised_train(logs, small(tmp_path, vehicles=1, local_steps=1, resume=True), split=split)
    total = json.loads((tmp_path / "centralised.json").read_text())["train_seconds"]
    _, meta = load_predictor(tmp_path / "centralised" / FINAL_NAME)
    assert total == meta["train_seconds"] > first


def test_the_command_writes_the_rounds_and_the_comparison(logs, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    out = tmp_path / "cli"
    args = parser.parse_args(["federated", "--logs", str(logs), "--out", str(out), "--vehicles", "2", "--rounds", "1",
                              "--local-steps", "1", "--batch-size", "4", "--predictor", "tiny", "--val-fraction",
                              str(VAL_FRACTION), "--assign", "scenario", "--centralised",
                              "--centralised-rounds"])  # fmt: skip
    assert args.run(args) == 0
    rounds = json.loads((out / "rounds.json").read_text())
    assert [v["drives"] for v in rounds["vehicles"]] == [["cut_in-000000", "cut_in-000002", "cut_in-000003"],
                                                         ["lead_brake-000001"]]  # fmt: skip
    assert rounds["validation"]["drives"] == ["cut_in-000001"]
    summary = json.loads((out / "summary.json").read_text())
    row = summary["table"][0]
    assert row["samples"] == 2 * 1 * 4 and row["federated_min_ade"] > 0 and row["centralised_min_ade"] > 0
    assert row["centralised_rounds_min_ade"] > 0
    matched = json.loads((out / "centralised-rounds" / "rounds.json").read_text())
    assert [v["drives"] for v in matched["vehicles"]] == [["cut_in-000000", "cut_in-000002", "cut_in-000003",
                                                           "lead_brake-000001"]]  # fmt: skip
    assert matched["rounds"][0]["samples"] == row["samples"]
    assert summary["centralised_rounds_model"] == str(out / "centralised-rounds" / "global.safetensors")
    printed = capsys.readouterr().out
    assert "federated vs centralised" in printed and "cen-r minADE" in printed


# --- the schedule-matched centralised baseline ----------------------------------------------------


@pytest.mark.parametrize("assign", ["hash", "scenario"])
def test_the_schedule_matched_baseline_is_one_vehicle_with_every_training_drive(split, tmp_path, assign):
    cfg = small(tmp_path, assign=assign, local_steps=3, resume=True, stop_after_round=1)
    matched = centralised_rounds_config(cfg)
    assert (matched.vehicles, matched.local_steps, matched.steps_per_round) == (1, 6, cfg.steps_per_round)
    assert (matched.rounds, matched.resume, matched.stop_after_round) == (2, True, 1)
    assert matched.out == tmp_path / "centralised-rounds"
    (vehicle,) = make_fleet(split, matched)
    assert vehicle.drives == tuple(d.drive for d in split.train)  # every training drive, no validation drive
    pooled = split.windows_of(split.train)
    assert vehicle.num_windows == pooled.batch_size == sum(v.num_windows for v in make_fleet(split, cfg))
    for name in type(pooled).field_names():
        assert torch.equal(getattr(vehicle.windows, name), getattr(pooled, name)), name


def test_the_schedule_matched_baseline_runs_the_fleets_samples_per_round_with_its_restarts(logs, split, tmp_path):
    cfg = small(tmp_path / "fedavg")
    fedavg = federated_train(logs, cfg, split=split)
    matched = centralised_rounds_train(logs, cfg, split=split)
    assert matched.finished and matched.model == tmp_path / "fedavg" / "centralised-rounds" / "global.safetensors"
    for fed, cen in zip(fedavg.rounds, matched.rounds, strict=True):
        assert (cen["round"], cen["optimizer_steps"], cen["samples"]) == (fed["round"], fed["optimizer_steps"],
                                                                          fed["samples"])  # fmt: skip
        assert cen["samples"] == cen["round"] * 2 * 2 * 4  # vehicles x local steps x batch per round
        assert [v["windows"] for v in cen["vehicles"]] == [4]  # one vehicle, all 4 training windows
    # Its first round is the one-cosine centralised run of one round's steps (same seed, data and schedule); its
    # second restarts the cosine and the optimiser, unlike the one-cosine run over both rounds.
    one_round = centralised_train(logs, small(tmp_path / "one-round", rounds=1), split=split)
    assert matched.rounds[0]["validation"] == one_round[0]["validation"]
    two_rounds = centralised_train(logs, cfg, split=split)
    assert two_rounds[0]["samples"] == matched.rounds[0]["samples"]
    final = weights_of(tmp_path / "fedavg" / "centralised" / FINAL_NAME)
    assert any(not torch.equal(final[name], value) for name, value in weights_of(matched.model).items())


# --- configs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [("vehicles", 0), ("rounds", 0), ("local_steps", 0), ("local_steps", 1.5), ("assign", "random"),
     ("val_fraction", 0.0), ("val_fraction", 1.0), ("batch_size", 0), ("lr", 0.0), ("kl_min", -1.0), ("seed", -1),
     ("stop_after_round", 3), ("stop_after_round", 0), ("eval_samples", 0), ("vehicles", True)],
)  # fmt: skip
def test_bad_configs_name_the_field(tmp_path, field, value):
    with pytest.raises(ConfigError, match=rf"FederatedConfig\.{field}: expected"):
        small(tmp_path, **{field: value})
