"""Closed loop on the exported artifact: the simulator drives the ONNX graphs and gets what torch gets."""

from __future__ import annotations

import pytest
import torch

from deploy.policy import RuntimeStackPolicy
from sim.policies import make_policy
from sim.runner import rollout
from sim.scenarios import build_batch, load_scenario, scenario_path
from stack.policy import StackPolicy
from tests.tiny_stack import RASTER


def _episode(policy, steps: int = 10):
    scenario = load_scenario(scenario_path("crosswalk_crowd")).with_overrides({"duration": 1.0})
    trail = []
    final, metrics, errors = rollout(
        build_batch(scenario, [0, 1]), policy, steps, raster=RASTER, observer=lambda s, o, p: trail.append(p)
    )
    assert errors == [None, None]
    return final, metrics, trail


def test_an_episode_on_onnxruntime_drives_like_torch(artifact, loaded_stack):
    """Same frames, same decisions: the trajectories agree to float tolerance at every step, with
    `plan_every` 2 so the perception-only graph runs between plans."""
    exported = RuntimeStackPolicy(artifact.root, "onnxruntime", sigma=1.0, plan_every=2)
    final_ort, metrics_ort, trail_ort = _episode(exported)
    final_torch, metrics_torch, trail_torch = _episode(StackPolicy(loaded_stack, sigma=1.0, plan_every=2))
    for ours, theirs in zip(trail_ort, trail_torch, strict=True):
        assert torch.allclose(ours.trajectory, theirs.trajectory, atol=1e-3)
    assert torch.allclose(final_ort.ego.xy, final_torch.ego.xy, atol=1e-3)
    assert torch.allclose(metrics_ort["score"], metrics_torch["score"], atol=1e-6)


def test_the_stack_policy_takes_a_backend_and_an_artifact(artifact):
    policy = make_policy("stack", backend="onnxruntime", artifact=artifact.root, plan_every=2)
    assert isinstance(policy, RuntimeStackPolicy) and policy.step_graph.backend == "onnxruntime"
    with pytest.raises(ValueError, match="--artifact DIR is required"):
        make_policy("stack", backend="onnxruntime")
    with pytest.raises(ValueError, match="backend 'tflite'"):
        make_policy("stack", backend="tflite")
    with pytest.raises(ValueError, match="exported with argmax=False"):
        make_policy("stack-argmax", backend="onnxruntime", artifact=artifact.root)
    with pytest.raises(ValueError, match="takes no option 'backend'"):
        make_policy("pdm", backend="onnxruntime")
