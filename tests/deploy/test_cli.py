"""`drivestack export`, `drivestack deploy parity|check-trt` and `drivestack sim --backend`."""

from __future__ import annotations

import json

from deploy.artifact import Artifact
from stack.cli import main


def test_export_of_some_graphs_keeps_the_others_of_the_same_checkpoint(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "art"
    assert main(["export", "--ckpt", str(tiny_checkpoint), "--out", str(out), "--graphs", "detector"]) == 0
    assert main(["export", "--ckpt", str(tiny_checkpoint), "--out", str(out), "--graphs", "tracker"]) == 0
    assert sorted(Artifact.open(out).graph_names) == ["detector", "tracker"]
    assert "tracker: 23 inputs" in capsys.readouterr().out


def test_parity_command_reports_every_output_and_passes(artifact, tmp_path, capsys):
    report = tmp_path / "parity.json"
    args = ["deploy", "parity", "--artifact", str(artifact.root), "--graphs", "tracker", "planner"]
    assert main([*args, "--batches", "1", "2", "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["passed"] and set(data["worst"]) == {"tracker", "planner"}
    assert "| planner | plan.trajectory |" in capsys.readouterr().out


def test_check_trt_command_finds_no_errors_in_the_project_graphs(artifact, capsys):
    assert main(["deploy", "check-trt", "--artifact", str(artifact.root)]) == 0
    out = capsys.readouterr().out
    assert "stack_step: 0 errors" in out and "planner: 0 errors" in out


def test_sim_with_an_unknown_backend_or_no_artifact_is_a_clear_error(capsys, tmp_path):
    args = ["sim", "--suite", "cut_in", "--policy", "stack", "--seeds", "1", "--out", str(tmp_path)]
    assert main([*args, "--backend", "tflite"]) == 2
    assert "backend 'tflite'" in capsys.readouterr().err
    assert main([*args, "--backend", "onnxruntime"]) == 2
    assert "--artifact DIR is required" in capsys.readouterr().err
