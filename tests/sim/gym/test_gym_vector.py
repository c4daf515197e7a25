"""The vector environment: Gymnasium's vector conventions, next-step autoreset, seeds, observations from
the past only, and the runner's closed loop reproduced step for step."""

from __future__ import annotations

import copy

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

import sim.gym  # noqa: F401 - registers the ids
from sim.config import RasterConfig
from sim.gym import DrivestackVectorEnv
from sim.gym.spaces import ACTION_MODES
from sim.policies import PolicyOutput
from sim.runner import rollout
from sim.scenarios import build_batch

SMALL = RasterConfig(size=32)  # the rasters' size does not matter here; small ones keep the tests fast


def vec(num_envs: int = 2, scenario: str = "cut_in", **options) -> DrivestackVectorEnv:
    options.setdefault("raster", SMALL)
    return DrivestackVectorEnv(num_envs=num_envs, scenario=scenario, **options)


def cruise(num_envs: int) -> np.ndarray:
    return np.tile(np.array([[0.5, 0.0]], np.float32), (num_envs, 1))


def assert_same(a, b) -> None:
    """Nested dicts of arrays, equal bit for bit."""
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            assert_same(a[key], b[key])
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("mode", ACTION_MODES)
def test_spaces_shapes_dtypes_and_infos_follow_the_vector_conventions(mode):
    envs = vec(3, action=mode, inputs=("detections", "ground_truth"))
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert envs.observation_space == batch_space(envs.single_observation_space, 3)
    assert envs.action_space == batch_space(envs.single_action_space, 3)
    assert set(envs.single_observation_space.keys()) == {"frame", "detections", "ground_truth"}
    for space in (envs.observation_space, envs.single_observation_space):  # samplable, as learners expect
        space.seed(0)
        assert space.sample() in space
    obs, info = envs.reset(seed=0)
    assert obs in envs.observation_space
    assert info["seed"].tolist() == [0, 1, 2] and info["_seed"].all()
    envs.action_space.seed(0)
    obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
    assert obs in envs.observation_space
    for part, fields in obs.items():
        for name, array in fields.items():
            box = envs.single_observation_space[part][name]
            assert array.shape == (3, *box.shape) and array.dtype == box.dtype, f"{part}.{name}"
    assert obs["frame"]["bev"].shape == (3, 2, 32, 32)
    assert reward.shape == (3,) and reward.dtype == np.float64
    assert terminated.dtype == np.bool_ and truncated.dtype == np.bool_ and terminated.shape == (3,)
    for name in ("seed", "progress_delta", "at_fault_collision", "off_road", "route_end_reached", "overspeed"):
        assert info[name].shape == (3,) and info[f"_{name}"].all(), name


def test_sync_vectorization_of_the_single_view_starts_the_same_episodes():
    ours = vec(2)
    theirs = gymnasium.make_vec("drivestack/cut_in-v0", num_envs=2, vectorization_mode="sync", raster=SMALL)
    assert_same(ours.reset(seed=11)[0], theirs.reset(seed=11)[0])
    assert_same(ours.step(cruise(2))[0], theirs.step(cruise(2))[0])


def test_a_truncated_sub_environment_restarts_at_the_next_step_with_its_next_seed():
    envs = vec(2, max_episode_steps=3)
    envs.reset(seed=5)
    for k in range(3):
        _, reward, terminated, truncated, info = envs.step(cruise(2))
        assert truncated.tolist() == [k == 2] * 2 and not terminated.any()
    # The step after the end: reset, the action ignored (even a NaN one), reward 0, no end, terms masked out.
    ignored = np.full((2, 2), np.nan, np.float32)
    obs, reward, terminated, truncated, info = envs.step(ignored)
    assert reward.tolist() == [0.0, 0.0] and not terminated.any() and not truncated.any()
    assert not info["_progress_delta"].any() and info["seed"].tolist() == [5 + 2, 6 + 2]
    # It is exactly the episode a fresh reset with those seeds starts.
    fresh, _ = vec(2).reset(seed=7)
    assert_same(obs, fresh)
    _, _, _, _, info = envs.step(cruise(2))
    assert info["_progress_delta"].all()


def test_an_at_fault_collision_terminates_and_only_that_sub_environment_restarts():
    """lead_brake, seed 0, flat out: the ego hits the braking lead car at step 34; seed 1 does not yet."""
    envs = vec(2, scenario="lead_brake", inputs=())
    alone = vec(1, scenario="lead_brake", inputs=())
    envs.reset(seed=0)
    alone.reset(seed=1)
    flat_out = np.array([[4.0, 0.0]] * 2, np.float32)
    for _ in range(34):
        obs, reward, terminated, truncated, info = envs.step(flat_out)
        alone_obs, *_ = alone.step(flat_out[:1])
        if terminated.any():
            break
    assert terminated.tolist() == [True, False] and not truncated.any()
    assert info["at_fault_collision"].tolist() == [True, False]
    assert reward[0] < -9.0  # the collision term, 10 x 1, less one step's progress
    obs, reward, terminated, truncated, info = envs.step(flat_out)
    alone_obs, *_ = alone.step(flat_out[:1])
    assert info["seed"].tolist() == [0 + 2, 1] and reward[0] == 0.0
    assert float(obs["frame"]["time"][0]) == 0.0
    # Sub-environment 1 drove on as if alone: the reset of its neighbour touched nothing of it.
    assert_same({k: v[1:] for k, v in obs["frame"].items()}, alone_obs["frame"])


def test_same_seed_same_episodes_other_seed_other_episodes():
    runs = []
    for seed in (3, 3, 4):
        envs = vec(2, action="trajectory")
        first, _ = envs.reset(seed=seed)
        envs.action_space.seed(0)
        steps = [envs.step(envs.action_space.sample()) for _ in range(3)]
        envs.reset()  # unseeded: each sub-environment goes on to its next seed
        again, info = envs.reset()
        runs.append((first, steps, again, info["seed"].tolist()))
    (first_a, steps_a, again_a, seeds_a), (first_b, steps_b, again_b, _), (first_c, *_) = runs
    assert_same(first_a, first_b)
    assert_same(again_a, again_b)
    for a, b in zip(steps_a, steps_b, strict=True):
        assert_same(a[0], b[0])
        for x, y in zip(a[1:4], b[1:4], strict=True):
            np.testing.assert_array_equal(x, y)
    assert seeds_a == [3 + 2 * 2, 4 + 2 * 2]
    differs = [n for n, a in first_a["detections"].items() if not np.array_equal(a, first_c["detections"][n])]
    assert differs  # another seed draws another cut-in (and other sensor noise)


def test_observations_are_computed_from_the_past_only():
    """The observation returned at step t is the same whatever action follows at t + 1, and later steps
    (or a caller writing into it) never change it."""
    envs_a, envs_b = vec(2), vec(2)
    envs_a.reset(seed=9)
    envs_b.reset(seed=9)
    obs_a, *_ = envs_a.step(cruise(2))
    obs_b, *_ = envs_b.step(cruise(2))
    kept = copy.deepcopy(obs_a)
    later_a, *_ = envs_a.step(cruise(2))
    later_b, *_ = envs_b.step(np.array([[-8.0, 0.6], [4.0, -0.6]], np.float32))
    assert_same(obs_a, kept)  # not overwritten by the next step
    assert_same(obs_a, obs_b)  # not a function of the next action
    assert not np.array_equal(later_a["frame"]["ego_speed"], later_b["frame"]["ego_speed"])
    # Writing into an observation does not reach the simulation.
    speed = envs_a.states[0].ego.speed.clone()
    later_a["frame"]["ego_speed"][:] = 99.0
    later_a["frame"]["ego_accel"][:] = 99.0
    assert torch.equal(envs_a.states[0].ego.speed, speed)


def test_trajectory_mode_is_the_runners_closed_loop():
    """A constant plan through the environment drives the ego exactly as `rollout` drives a policy
    returning that plan: the same observation, controller and step, in the same order."""
    plan = torch.stack((torch.arange(1, 13) * 3.2, torch.linspace(0.1, 1.2, 12)), dim=-1)  # 8 m/s, drifting left

    class Constant:
        name, inputs = "constant", frozenset()

        def initial_state(self, batch, device):
            return None

        def act(self, state, obs):
            return PolicyOutput(trajectory=plan.expand(obs.frame.batch_size, -1, -1).clone()), None

    envs = vec(2, action="trajectory", inputs=())
    envs.reset(seed=21)
    for _ in range(6):
        envs.step(np.broadcast_to(plan.numpy(), (2, 12, 2)))
    start = build_batch(envs.blocks[0].scenario, [21, 22])
    final, _, _ = rollout(start, Constant(), 6, raster=SMALL)
    for name in ("xy", "yaw", "speed", "accel", "steer"):
        assert torch.equal(getattr(envs.states[0].ego, name), getattr(final.ego, name)), name


def test_a_suite_runs_each_scenario_on_its_own_block():
    envs = vec(5, scenario="demo")
    assert [(b.scenario.name, b.start, b.stop) for b in envs.blocks] == [
        ("crosswalk_crowd", 0, 2),
        ("cut_in", 2, 3),
        ("occluded_pedestrian", 3, 4),
        ("ghost_road", 4, 5),
    ]
    obs, info = envs.reset(seed=0)
    assert obs in envs.observation_space
    obs, *_ = envs.step(cruise(5))
    assert obs in envs.observation_space
    # Object lists are as wide as the widest scenario's; the narrower ones' extra slots are empty.
    cut_in_slots = vec(1, scenario="cut_in").single_observation_space["detections"]["valid"].shape[0]
    assert not obs["detections"]["valid"][2, cut_in_slots:].any()


def test_validate_checks_every_observation_and_state():
    envs = vec(1, validate=True, inputs=("detections", "ground_truth"))
    envs.reset(seed=0)
    envs.step(cruise(1))
