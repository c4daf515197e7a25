"""Model versions and the closed-loop regression gate."""

from __future__ import annotations

import pytest
import yaml

import fleet.registry as registry_module
from deploy.artifact import Artifact
from fleet.registry import COLLISIONS, REGISTRY_FILE, GateSettings, Registry, passes_gate, promote
from sim.scenarios import scenario_path
from stack.cli import main
from tests.tiny_stack import tiny_stack


@pytest.fixture(scope="module")
def short_suite(tmp_path_factory):
    """A 1 s cut_in as the gate's suite (a scenario file)."""
    data = yaml.safe_load(scenario_path("cut_in").read_text())
    data["duration"] = 1.0
    path = tmp_path_factory.mktemp("suite") / "cut_in_short.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("candidates")
    paths = []
    for seed in (0, 1):
        path = root / f"stack-{seed}.safetensors"
        tiny_stack(seed).save(path)
        paths.append(path)
    return paths


def test_the_first_candidate_is_promoted_exported_and_versioned(tmp_path, short_suite, checkpoints):
    gate = GateSettings(suite=str(short_suite), seeds=1)
    version = promote(Registry(tmp_path), checkpoints[0], gate, logs={"train": [{"drive": "cut_in-000001"}]})
    assert (version.version, version.status) == (1, "promoted")
    reloaded = Registry(tmp_path)
    assert reloaded.current == 1 and reloaded.get(1).sha256 == version.sha256
    assert reloaded.get(1).logs == {"train": [{"drive": "cut_in-000001"}]}
    assert "score_mean" in reloaded.get(1).metrics and (tmp_path / "v0001" / "eval" / "summary.json").is_file()
    assert "stack_step" in Artifact.open(tmp_path / version.export).graph_names


def test_a_candidate_that_drives_worse_is_versioned_but_not_promoted(tmp_path, checkpoints, monkeypatch):
    scores = {1: 0.8, 2: 0.7}

    def fake_closed_loop(registry, version, gate):
        return {"score_mean": scores[version.version]}

    monkeypatch.setattr(registry_module, "closed_loop", fake_closed_loop)
    gate = GateSettings(export=False)
    registry = Registry(tmp_path)
    assert promote(registry, checkpoints[0], gate).status == "promoted"
    worse = promote(registry, checkpoints[1], gate)
    assert (worse.status, worse.compared_with, worse.metrics["current_score_mean"]) == ("rejected", 1, 0.8)
    assert Registry(tmp_path).current == 1 and worse.export is None
    scores[3] = 0.8  # at least as good as the current model: promoted
    assert promote(registry, checkpoints[1], gate).status == "promoted" and Registry(tmp_path).current == 3


def test_the_collision_guard_refuses_a_better_score_bought_with_collisions(tmp_path, checkpoints, monkeypatch):
    metrics = {1: {"score_mean": 0.8, COLLISIONS: 5.0}, 2: {"score_mean": 0.9, COLLISIONS: 15.0},
               3: {"score_mean": 0.9, COLLISIONS: 10.0}}  # fmt: skip
    monkeypatch.setattr(registry_module, "closed_loop", lambda registry, version, gate: metrics[version.version])
    gate = GateSettings(export=False, max_collision_increase_pct=5.0)
    registry = Registry(tmp_path)
    promote(registry, checkpoints[0], gate)
    assert promote(registry, checkpoints[1], gate).status == "rejected"  # +10 points
    assert promote(registry, checkpoints[1], gate).status == "promoted"  # +5 points: within the guard
    unguarded = GateSettings(export=False)
    assert passes_gate(metrics[2], metrics[1], unguarded) and not passes_gate(metrics[2], metrics[1], gate)


def test_promote_command_and_a_corrupted_registry(tmp_path, short_suite, checkpoints, capsys):
    args = ["fleet", "promote", "--candidate", str(checkpoints[0]), "--registry", str(tmp_path / "reg"),
            "--suite", str(short_suite), "--seeds", "1", "--no-export"]  # fmt: skip
    assert main(args) == 0
    assert "v0001: score" in capsys.readouterr().out and "promoted" in (tmp_path / "reg" / REGISTRY_FILE).read_text()
    (tmp_path / "reg" / REGISTRY_FILE).write_text("{broken")
    with pytest.raises(ValueError, match="unreadable"):
        Registry(tmp_path / "reg")
