"""The single-environment view passes Gymnasium's environment checker; the registered ids make both
kinds of environment."""

from __future__ import annotations

import re
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim.gym
from sim.config import RasterConfig
from sim.gym import DrivestackEnv, DrivestackVectorEnv, registered_ids
from sim.gym.spaces import ACTION_MODES
from sim.scenarios import packaged_scenarios, packaged_suites, scenario_path

SMALL = RasterConfig(size=32)

# What the checker says that is not a problem here, each for a stated reason:
EXPECTED_WARNINGS = (
    # Positions, velocities, heights and times are unbounded quantities; a made-up finite bound would be a lie.
    r"A Box observation space (minimum|maximum) value is -?infinity",
    # "control" actions are physical (m/s^2, rad) with the simulator's own limits, asymmetric in
    # acceleration; gymnasium.wrappers.RescaleAction normalises them for a learner that wants [-1, 1].
    r"For Box action spaces, we recommend using a symmetric and normalized space",
)


@pytest.mark.parametrize("mode", ACTION_MODES)
def test_the_single_view_passes_the_environment_checker(mode):
    env = gymnasium.make("drivestack/cut_in-v0", action=mode, inputs=("detections", "ground_truth"), raster=SMALL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    unexpected = [str(w.message) for w in caught if not any(re.search(p, str(w.message)) for p in EXPECTED_WARNINGS)]
    assert unexpected == []


def test_the_single_view_is_sub_environment_zero_of_the_vector_one():
    single = DrivestackEnv(scenario="cut_in", raster=SMALL)
    vector = DrivestackVectorEnv(num_envs=1, scenario="cut_in", raster=SMALL)
    obs, info = single.reset(seed=4)
    batch, _ = vector.reset(seed=4)
    assert info == {"seed": 4}
    np.testing.assert_array_equal(obs["frame"]["bev"], batch["frame"]["bev"][0])
    obs, reward, terminated, truncated, info = single.step(np.array([1.0, 0.0], np.float32))
    batch, rewards, *_ = vector.step(np.array([[1.0, 0.0]], np.float32))
    assert isinstance(reward, float) and reward == rewards[0]
    assert terminated is False and truncated is False
    assert obs["frame"]["ego_speed"].shape == () and obs["frame"]["ego_speed"] == batch["frame"]["ego_speed"][0]


def test_every_packaged_scenario_and_suite_has_an_id():
    ids = registered_ids()
    for name in packaged_scenarios() + packaged_suites():
        assert ids[sim.gym.env_id(name)] == name
    assert ids["drivestack/scenario-v0"] is None
    assert "drivestack/hard_v2-v0" in ids and all(i in gymnasium.registry for i in ids)
    sim.gym.register_envs()  # again: harmless


def test_make_and_make_vec_build_our_classes():
    env = gymnasium.make("drivestack/cut_in-v0", raster=SMALL)
    assert isinstance(env.unwrapped, DrivestackEnv)
    envs = gymnasium.make_vec("drivestack/cut_in-v0", num_envs=3, vectorization_mode="vector_entry_point", raster=SMALL)
    assert isinstance(envs, DrivestackVectorEnv) and envs.num_envs == 3
    assert envs.spec.id == "drivestack/cut_in-v0"
    # The module:id form imports sim.gym (which registers) before looking the id up.
    envs = gymnasium.make_vec("sim.gym:drivestack/ghost_road-v0", num_envs=2, raster=SMALL)
    assert isinstance(envs, DrivestackVectorEnv) and envs.blocks[0].scenario.name == "ghost_road"
    # Any scenario file, through the generic id.
    envs = gymnasium.make_vec("drivestack/scenario-v0", num_envs=2, scenario=str(scenario_path("merge")), raster=SMALL)
    assert envs.blocks[0].scenario.name == "merge"
