"""Every runtime backend refuses non-finite inputs (issue 16): `sigma = nan` or a NaN ego speed through the
onnxruntime backend came back as a NaN plan without a word, while the torch backend refused it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deploy.examples import recorded_inputs
from deploy.runtime import open_runtime
from deploy.spec import InputError


@pytest.fixture(scope="module")
def step_feed(artifact, loaded_stack):
    feed = recorded_inputs(loaded_stack, 2, seed=3)
    return {n: feed[n] for n in artifact.spec("stack_step").input_names}


def _with(feed, name, index, value):
    changed = feed[name].clone()
    changed.view(-1)[index] = value
    return {**feed, name: changed}


NAN, INF = float("nan"), float("inf")
ONE_NAN, ONE_INF = "1 NaN and 0 infinite", "0 NaN and 1 infinite"
CASES = [
    ("sigma", NAN, ONE_NAN),
    ("sigma", INF, ONE_INF),
    ("frame.ego_speed", NAN, ONE_NAN),
    ("frame.ego_pose", -INF, ONE_INF),
    ("frame.bev", NAN, ONE_NAN),
    ("state.tracker.mean", NAN, ONE_NAN),
]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize(("name", "value", "count"), CASES)
def test_a_non_finite_input_is_refused_naming_it(artifact, step_feed, backend, name, value, count):
    runtime = open_runtime(artifact.root, "stack_step", backend)
    with pytest.raises(InputError, match=rf"input '{name}': expected finite values, got {count}"):
        runtime.run(_with(step_feed, name, 1, value))


def test_numpy_inputs_are_checked_too(artifact, step_feed):
    runtime = open_runtime(artifact.root, "stack_step", "onnxruntime")
    feed = {k: v.numpy() for k, v in step_feed.items()}
    feed["sigma"] = np.array([1.0, np.nan], dtype=np.float32)
    with pytest.raises(InputError, match="input 'sigma': expected finite values"):
        runtime.run(feed)


def test_finite_inputs_still_run_and_give_finite_plans(artifact, step_feed):
    out = open_runtime(artifact.root, "stack_step", "onnxruntime").run(step_feed)
    assert torch.isfinite(out["plan.trajectory"]).all()


def test_finite_values_whose_sum_overflows_are_not_mistaken_for_infinite(artifact, step_feed):
    huge = step_feed["frame.bev"].clone()
    huge.view(-1)[:4] = 3e38  # finite, but their float32 sum is inf: the fast path falls back to the exact check
    artifact.spec("stack_step").check_inputs({**step_feed, "frame.bev": huge})
