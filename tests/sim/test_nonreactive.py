"""Non-reactive mode: agents replay a recording made without the ego."""

from __future__ import annotations

import pytest
import torch

from sim.nonreactive import make_non_reactive
from sim.state import Behaviour
from sim.step import EgoAction, step
from tests.sim.worlds import idm_car, mixed_world, road_world, set_ego, straight

STEPS = 80


def hold(batch: int = 1) -> EgoAction:
    zero = torch.zeros(batch)
    return EgoAction(accel=zero, steer=zero)


def car_behind_stopped_ego():
    world = road_world([straight(96, 400.0)], agents=2)
    world = idm_car(world, 0, 0, path=0, s=10.0, speed=10.0, desired_speed=10.0, yields_to_ego=True)
    return set_ego(world, xy=(50.0, 0.0), speed=0.0, progress=50.0)  # stopped in the car's lane


def test_reactive_car_stops_but_non_reactive_replay_ignores_the_ego():
    reactive = car_behind_stopped_ego()
    replayed = make_non_reactive(reactive, STEPS)
    for _ in range(STEPS):
        reactive = step(reactive, hold())
        replayed = step(replayed, hold())
    ego_rear = 50.0 - 0.5 * (4.6 - 2.8)  # rear axle minus the rear overhang
    assert float(reactive.agents.xy[0, 0, 0]) + 0.5 * 4.5 < ego_rear  # waiting behind the ego
    assert float(reactive.agents.speed[0, 0]) < 1.0
    assert float(replayed.agents.xy[0, 0, 0]) > 80.0  # drove straight through it
    assert float(replayed.agents.speed[0, 0]) == pytest.approx(10.0, abs=0.01)


def test_log_starts_at_the_initial_pose_and_replays_exactly():
    world = mixed_world(2)
    replayed = make_non_reactive(world, 30)
    log = replayed.log
    assert tuple(log.xy.shape) == (2, world.num_agents, 31, 2)
    assert torch.equal(log.xy[:, :, 0], world.agents.xy)
    assert torch.equal(log.valid[:, :, 0], world.agents.valid)
    was = world.agents.behaviour
    now = replayed.agents.behaviour
    moving = (was == int(Behaviour.IDM)) | (was == int(Behaviour.WALK))
    assert bool((now[moving] == int(Behaviour.REPLAY)).all())
    assert torch.equal(now[~moving], was[~moving])
    # Whatever the ego does, the agents now follow the recording.
    for k in range(1, 31):
        replayed = step(replayed, EgoAction(accel=torch.full((2,), 2.0), steer=torch.full((2,), 0.1)))
        shown = log.valid[:, :, k]
        assert torch.equal(replayed.agents.valid, shown)
        assert torch.equal(replayed.agents.xy[shown], log.xy[:, :, k][shown])


def test_requires_episodes_at_step_zero():
    world = step(car_behind_stopped_ego(), hold())
    with pytest.raises(ValueError, match="state.step must be 0.*episode 0 is at step 1"):
        make_non_reactive(world, 10)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        make_non_reactive(car_behind_stopped_ego(), 0)


def test_non_reactive_scenario_files_replay_their_agents():
    from sim.scenarios import build_batch, load_scenario, scenario_path
    from sim.state import Behaviour

    scenario = load_scenario(scenario_path("cruising")).with_overrides({"reactive": False, "duration": 2.0})
    world = build_batch(scenario, [0, 1])
    moving = world.agents.valid & (world.params.desired_speed > 0)
    assert bool((world.agents.behaviour[moving] == int(Behaviour.REPLAY)).all())
    assert world.log.xy.shape[2] == 21  # 2 s at 0.1 s, plus the initial pose
