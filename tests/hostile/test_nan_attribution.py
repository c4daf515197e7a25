"""A NaN is named where it enters (issue 16): NaN in `frame.bev` or `frame.ego_pose` was reported as
`Forecast.log_weights: expected finite values`, three modules from its cause, and a checkpoint with NaN weights
loaded and failed only at the first step, without the file's name."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core.checkpoint import CheckpointError
from core.contracts import ContractError
from sim.scenarios import build_batch, load_scenario, scenario_path
from sim.sensors import render_frame
from stack.model import Stack
from tests.tiny_stack import RASTER, tiny_stack


@pytest.fixture(scope="module")
def frame():
    return render_frame(build_batch(load_scenario(scenario_path("cruising")), [0, 1]), RASTER)


@pytest.mark.parametrize(("field", "index"), [("bev", (1, 0, 5, 5)), ("ego_pose", (0, 2)), ("ego_speed", (1,))])
def test_nan_in_the_frame_is_named_as_the_frame_field(frame, field, index):
    stack = tiny_stack()
    value = getattr(frame, field).clone()
    value[index] = float("nan")
    broken = dataclasses.replace(frame, **{field: value})
    with pytest.raises(ContractError, match=rf"SensorFrame\.{field}: expected finite values"):
        stack.step(stack.initial_state(frame), broken, 1.0)


def test_a_checkpoint_with_nan_weights_is_refused_at_load_naming_file_and_tensor(tmp_path):
    stack = tiny_stack()
    with torch.no_grad():
        next(stack.predictor.parameters())[0].fill_(float("nan"))
    path = stack.save(tmp_path / "diverged.safetensors")
    with pytest.raises(CheckpointError, match=r"diverged\.safetensors: tensor 'predictor\..*' has \d+ NaN or infinite"):
        Stack.load(path)
