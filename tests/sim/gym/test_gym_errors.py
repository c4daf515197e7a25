"""Bad input fails with an error naming the field and what was expected; the spaces and the splice."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch

from core.config import ConfigError
from core.contracts import ContractError
from sim.config import RasterConfig
from sim.gym import DrivestackVectorEnv
from sim.gym.splice import _put_raster
from sim.scenarios import ScenarioError

SMALL = RasterConfig(size=32)


@pytest.fixture(scope="module")
def envs():
    envs = DrivestackVectorEnv(num_envs=2, scenario="cut_in", raster=SMALL, inputs=())
    envs.reset(seed=0)
    return envs


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        (np.zeros((2, 3)), r"actions: expected shape \(2, 2\) \[num_envs, \(accel m/s\^2, steer rad\)\].*got \(2, 3\)"),
        (np.zeros(2), r"actions: expected shape \(2, 2\)"),
        (np.array([[0.0, 0.0], [np.nan, 0.0]]), r"actions\[1\]: expected finite values"),
        (np.array([[9.0, 0.0], [0.0, 0.0]]), r"actions\[0\]: accel = 9 m/s\^2 is outside \[-8, 4\]"),
        (np.array([[0.0, 0.0], [0.0, -0.7]]), r"actions\[1\]: steer = -0.7 rad is outside \[-0.6, 0.6\]"),
        ("fast", r"actions: expected a number array of shape \(2, 2\)"),
    ],
)
def test_bad_actions_name_the_sub_environment_and_the_range(envs, actions, message):
    with pytest.raises(ContractError, match=message):
        envs.step(actions)


def test_bad_trajectories_name_the_sample():
    envs = DrivestackVectorEnv(num_envs=1, scenario="cut_in", action="trajectory", raster=SMALL, inputs=())
    envs.reset(seed=0)
    plan = np.zeros((1, 12, 2))
    plan[0, 5, 1] = 300.0
    with pytest.raises(ContractError, match=r"actions\[0\]: sample 5 y = 300 m is outside \[-250, 250\]"):
        envs.step(plan)
    with pytest.raises(ContractError, match=r"expected shape \(1, 12, 2\) \[num_envs, \(T samples, x/y m\)\]"):
        envs.step(np.zeros((1, 2)))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"num_envs": 0}, ConfigError, r"num_envs: expected an int >= 1, got 0"),
        ({"scenario": "no_such_thing"}, ScenarioError, r"unknown suite 'no_such_thing': expected a packaged suite"),
        ({"scenario": "missing.yaml"}, ScenarioError, r"missing.yaml: no such suite or scenario file"),
        ({"scenario": None}, ConfigError, r"EnvConfig.scenario: expected a packaged scenario or suite name"),
        ({"action": "throttle"}, ConfigError, r"EnvConfig.action: expected one of \('control', 'trajectory'\)"),
        ({"device": "gpu0"}, ConfigError, r"EnvConfig.device: expected a torch device such as 'cpu' or 'cuda'"),
        ({"inputs": ("lidar",)}, ConfigError, r"EnvConfig.inputs: expected a subset of"),
        ({"max_episode_steps": 500}, ConfigError, r"max_episode_steps: expected at most 120 for scenario 'cut_in'"),
        ({"scenario": "hard", "num_envs": 4}, ConfigError, r"num_envs: expected at least one sub-environment per scen"),
        ({"colour": "red"}, ConfigError, r"DrivestackVectorEnv: unknown options \['colour'\]"),
    ],
)
def test_bad_options_name_the_field(kwargs, error, message):
    options = {"num_envs": 2, "scenario": "cut_in", **kwargs}
    with pytest.raises(error, match=message):
        DrivestackVectorEnv(**options)


def test_stepping_before_reset_and_bad_seeds_are_refused():
    envs = DrivestackVectorEnv(num_envs=1, scenario="cut_in", raster=SMALL, inputs=())
    with pytest.raises(gymnasium.error.ResetNeeded, match="call reset"):
        envs.step(np.zeros((1, 2)))
    with pytest.raises(ConfigError, match=r"reset: seed must be an int >= 0 or None, got -1"):
        envs.reset(seed=-1)
    with pytest.raises(ConfigError, match=r"reset: expected no options, got \['reset_mask'\]"):
        envs.reset(options={"reset_mask": np.ones(1, bool)})


def test_a_replaced_raster_stays_shared_when_equal_and_is_padded_when_not():
    old = torch.randint(0, 255, (1, 3, 4, 5), dtype=torch.uint8)
    rows = torch.tensor([2])
    assert _put_raster(old, rows, old.clone(), batch=3) is old
    new = torch.randint(0, 255, (1, 3, 6, 3), dtype=torch.uint8)
    merged = _put_raster(old, rows, new, batch=3)
    assert merged.shape == (3, 3, 6, 5)
    for b in (0, 1):
        assert torch.equal(merged[b, :, :4, :5], old[0]) and not merged[b, :, 4:].any()
    assert torch.equal(merged[2, :, :, :3], new[0]) and not merged[2, :, :, 3:].any()
