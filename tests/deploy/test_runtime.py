"""The Runtime interface: input checks that name the input, no silent fallback, parity reports."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deploy.base import BackendUnavailable
from deploy.examples import recorded_inputs
from deploy.parity import match_slots, output_error, parity, summarise
from deploy.runtime import open_runtime
from deploy.spec import GraphSpec, InputError


@pytest.fixture(scope="module")
def planner_feed(artifact, loaded_stack):
    feed = recorded_inputs(loaded_stack, 2, seed=1)
    return {n: feed[n] for n in artifact.spec("planner").input_names}


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_wrong_inputs_are_errors_that_name_the_input(artifact, planner_feed, backend):
    runtime = open_runtime(artifact.root, "planner", backend)
    missing = {k: v for k, v in planner_feed.items() if k != "sigma"}
    with pytest.raises(InputError, match="missing input 'sigma'"):
        runtime.run(missing)
    with pytest.raises(InputError, match="unknown input 'sigmaa'"):
        runtime.run({**planner_feed, "sigmaa": torch.ones(2)})
    with pytest.raises(InputError, match=r"input 'forecast.means': expected shape"):
        runtime.run({**planner_feed, "forecast.means": planner_feed["forecast.means"][..., :1]})
    with pytest.raises(InputError, match=r"input 'sigma': expected dtype float32"):
        runtime.run({**planner_feed, "sigma": torch.ones(2, dtype=torch.float64)})
    with pytest.raises(InputError, match="axis batch is 3 but input"):
        runtime.run({**planner_feed, "sigma": torch.ones(3)})


def test_numpy_inputs_are_accepted(artifact, planner_feed):
    runtime = open_runtime(artifact.root, "planner")
    out = runtime.run({k: v.numpy() for k, v in planner_feed.items()})
    assert out["plan.trajectory"].shape[0] == 2
    with pytest.raises(InputError, match="expected a torch.Tensor or numpy array"):
        runtime.run({**planner_feed, "sigma": [1.0, 2.0]})


def test_a_provider_that_is_not_active_is_an_error_not_a_fallback(artifact):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider; the refusal is for builds without it")
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider is not in this build"):
        open_runtime(artifact.root, "detector", "onnxruntime", "cuda")
    with pytest.raises(BackendUnavailable, match="TensorrtExecutionProvider"):
        open_runtime(artifact.root, "detector", "onnxruntime", "tensorrt")


def test_bad_backend_precision_and_device_names_are_errors(artifact):
    with pytest.raises(ValueError, match="backend 'tflite'"):
        open_runtime(artifact.root, "detector", "tflite")
    with pytest.raises(ValueError, match="precision 'int8'"):
        open_runtime(artifact.root, "detector", precision="int8")
    with pytest.raises(ValueError, match="fp32 only"):
        open_runtime(artifact.root, "detector", "onnxruntime", "cpu", "fp16")
    with pytest.raises(ValueError, match="expected cpu, cuda"):
        open_runtime(artifact.root, "detector", "onnxruntime", "tpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_cuda_graph_replay_matches_eager(artifact, loaded_stack):
    feed = recorded_inputs(loaded_stack, 2, seed=4)
    eager = open_runtime(artifact.root, "stack_step", "torch", "cuda")
    graph = open_runtime(artifact.root, "stack_step", "torch", "cuda", cuda_graph=True)
    inputs = {n: feed[n] for n in eager.spec.input_names}
    want, got = eager.run(inputs), graph.run(inputs)
    for name, value in want.items():
        assert output_error(got[name], value) <= 1e-5, name


def test_spec_round_trips_through_json(artifact):
    spec = artifact.spec("stack_step")
    assert GraphSpec.from_json(spec.to_json()) == spec


def test_output_error_is_scale_relative_and_counts_discrete_mismatches():
    ref = torch.tensor([0.0, 1.0, -2.0])
    assert output_error(ref + torch.tensor([0.0, 0.0, 2e-4]), ref) == pytest.approx(1e-4, rel=1e-3)
    tiny = torch.tensor([2e-4, 1e-5])  # probabilities of a scene with no objects: judged on [0, 1]
    assert output_error(tiny + 1e-7, tiny, probability=True) == pytest.approx(1e-7, rel=1e-3)
    assert output_error(tiny + 1e-7, tiny) > 1e-4
    assert output_error(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 4])) == pytest.approx(1 / 3)
    assert output_error(torch.zeros(3), torch.zeros(3)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        output_error(torch.zeros(2), torch.zeros(3))


def test_parity_reports_every_output_of_every_case(artifact):
    cases = parity(artifact.root, graphs=["tracker", "planner"], batches=(1, 3))
    assert {(c.graph, c.source, c.batch) for c in cases} == {
        (g, s, b) for g in ("tracker", "planner") for s in ("random", "recorded") for b in (1, 3)
    }
    summary = summarise(cases)
    assert set(summary["worst"]["planner"]) == set(artifact.spec("planner").output_names)
    assert summary["passed"], summary["worst"]
    assert all(np.isfinite(e) for c in cases for e in c.errors.values())


def test_tracker_slots_are_matched_before_comparing():
    """Two tracks that swap slots are the same set of tracks: raw errors are large, matched ones zero."""
    mean = torch.tensor([[[1.0, 2.0, 0.0, 0.0], [5.0, 6.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    existence = torch.tensor([[0.9, 0.1, 0.0]])
    reference = {"new_state.tracker.mean": mean, "new_state.tracker.existence": existence,
                 "new_state.tracker.ego_pose": torch.zeros(1, 3)}  # fmt: skip
    swap = torch.tensor([1, 0, 2])
    candidate = {"new_state.tracker.mean": mean[:, swap], "new_state.tracker.existence": existence[:, swap],
                 "new_state.tracker.ego_pose": torch.zeros(1, 3)}  # fmt: skip
    assert output_error(candidate["new_state.tracker.mean"], mean) > 0.5
    matched = match_slots(candidate, reference)
    for name, value in reference.items():
        assert torch.equal(matched[name], value), name


def test_the_backends_build_on_the_leaf_module_not_on_the_factory_that_imports_them():
    """No import circle: `deploy.runtime.open_runtime` imports the backends, the backends import `deploy.base`."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "deploy"
    for path in [root / "base.py", *sorted((root / "backends").glob("*.py"))]:
        imported = {node.module for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)}
        assert "deploy.runtime" not in imported, f"{path.name} imports deploy.runtime"
    base = {
        node.module for node in ast.walk(ast.parse((root / "base.py").read_text())) if isinstance(node, ast.ImportFrom)
    }
    assert not any(m and m.startswith("deploy.backends") for m in base)
