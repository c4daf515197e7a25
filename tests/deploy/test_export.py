"""Export: every graph passes onnx.checker, carries its metadata, and keeps a dynamic batch."""

from __future__ import annotations

import json

import onnx
import pytest
import torch

from deploy.artifact import CHECKPOINT, MANIFEST, Artifact
from deploy.base import ArtifactError
from deploy.examples import random_inputs, recorded_inputs
from deploy.export import export_stack
from deploy.graphs import GRAPH_NAMES
from deploy.parity import TOLERANCE, compare
from deploy.runtime import open_runtime
from deploy.spec import BATCH, SAMPLES
from stack.model import Stack


def test_every_graph_is_exported_checked_and_described(artifact, loaded_stack):
    assert sorted(artifact.graph_names) == sorted(GRAPH_NAMES)
    for name in GRAPH_NAMES:
        model = onnx.load(str(artifact.graph_path(name)))
        onnx.checker.check_model(model, full_check=True)
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["drivestack.graph"] == name
        assert json.loads(meta["drivestack.spec"]) == artifact.spec(name).to_dict()
        assert json.loads(meta["drivestack.config"]) == json.loads(json.dumps(loaded_stack.cfg.to_dict()))
        assert "drivestack.version" in meta


def test_batch_and_sample_axes_are_dynamic_and_named(artifact):
    for name in GRAPH_NAMES:
        model = onnx.load(str(artifact.graph_path(name)))
        for value in model.graph.input:
            first = value.type.tensor_type.shape.dim[0]
            assert first.dim_param == BATCH, f"{name}: input {value.name} has a fixed batch {first.dim_value}"
    spec = artifact.spec("stack_step_sampled")
    assert spec.input("noise.position").shape[:3] == (BATCH, spec.input("noise.position").shape[1], SAMPLES)
    assert spec.input("sigma").shape == (BATCH,)
    names = spec.input_names
    assert any(n.startswith("state.tracker.") for n in names)
    assert any(n.startswith("new_state.tracker.") for n in spec.output_names)


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_onnxruntime_matches_torch_at_several_batch_sizes(artifact, loaded_stack, batch):
    """The example batch was 3; batch 1 and other sizes must run and agree (the batch is not baked in)."""
    feed = recorded_inputs(loaded_stack, batch, seed=11)
    for name in GRAPH_NAMES:
        errors, _ = compare(open_runtime(artifact.root, name, "torch"), open_runtime(artifact.root, name), feed)
        assert max(errors.values()) <= TOLERANCE, f"{name} at batch {batch}: {errors}"


def test_random_valid_inputs_match_too(artifact, loaded_stack):
    feed = random_inputs(loaded_stack, 4, seed=3)
    for name in ("detector", "predictor", "planner_sampled", "stack_step"):
        errors, _ = compare(open_runtime(artifact.root, name, "torch"), open_runtime(artifact.root, name), feed)
        assert max(errors.values()) <= TOLERANCE, f"{name}: {errors}"


def test_sigma_is_an_input_not_a_constant(artifact, loaded_stack):
    feed = recorded_inputs(loaded_stack, 2, seed=5)
    runtime = open_runtime(artifact.root, "planner")
    inputs = {n: feed[n] for n in runtime.spec.input_names}
    low = runtime.run({**inputs, "sigma": torch.zeros(2)})
    high = runtime.run({**inputs, "sigma": torch.full((2,), 5.0)})
    assert torch.equal(high["plan.sigma"], torch.full((2,), 5.0))
    assert not torch.allclose(low["plan.candidate_risk"], high["plan.candidate_risk"])


def test_export_refuses_a_batch_one_example_and_unknown_graphs(tiny_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="example_batch"):
        export_stack(tiny_checkpoint, tmp_path, graphs=["detector"], example_batch=1)
    with pytest.raises(ValueError, match="unknown"):
        export_stack(tiny_checkpoint, tmp_path, graphs=["lidar"])


def test_a_corrupted_graph_or_missing_manifest_is_a_clear_error(artifact, tmp_path):
    copy = tmp_path / "art"
    copy.mkdir()
    for path in artifact.root.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    data = bytearray((copy / "detector.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "detector.onnx").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="detector.onnx is corrupted"):
        open_runtime(copy, "detector")
    with pytest.raises(ArtifactError, match="no graph 'lidar'"):
        open_runtime(copy, "lidar")
    (copy / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        Artifact.open(copy)
    (copy / MANIFEST).unlink()
    with pytest.raises(ArtifactError, match="no manifest.json"):
        Artifact.open(copy)
    assert (artifact.root / CHECKPOINT).is_file()


def test_the_project_graphs_pass_the_tensorrt_readiness_check(artifact):
    from deploy.trt_check import check_artifact

    for name, findings in check_artifact(artifact.root).items():
        errors = [f for f in findings if f.severity == "error"]
        assert not errors, f"{name}: {errors}"


def test_the_lane_reading_predictor_and_lane_changing_planner_export_and_match(tmp_path):
    """The shipped stack's predictor reads `frame.lanes` and its planner checks lane changes against them;
    the session's tiny stack does neither, so this one exports those two graphs."""
    from dataclasses import replace

    from prediction.config import PredictorConfig
    from sim.proposals import ProposalConfig
    from tests.tiny_stack import tiny_stack

    planner = replace(tiny_stack().cfg.planner, proposals=ProposalConfig(speed_fractions=(0.5, 1.0)))
    stack = tiny_stack(predictor=PredictorConfig.tiny(lanes=True), planner=planner)
    checkpoint = stack.save(tmp_path / "lanes.safetensors")
    artifact = export_stack(checkpoint, tmp_path / "export", graphs=("predictor", "planner"))
    assert {"frame.lanes", "frame.lanes_valid"} <= set(artifact.spec("predictor").input_names)
    feed = recorded_inputs(Stack.load(checkpoint), 3, scenario="lead_brake", seed=2)
    assert bool(feed["frame.lanes_valid"].any())
    for name in ("predictor", "planner"):
        errors, _ = compare(open_runtime(artifact.root, name, "torch"), open_runtime(artifact.root, name), feed)
        assert max(errors.values()) <= TOLERANCE, f"{name}: {errors}"
    from deploy.trt_check import check_artifact

    for name, findings in check_artifact(artifact.root).items():
        assert not [f for f in findings if f.severity == "error"], name
