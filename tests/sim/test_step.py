"""The pure step: action checks, determinism, batch independence, the ego's
bicycle, replay, walkers, appearing agents, and CUDA."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from core.contracts import ContractError
from sim.state import Behaviour, WorldState
from sim.step import EgoAction, step
from tests.sim.worlds import (
    episodes,
    mixed_world,
    park_ego,
    road_world,
    set_ego,
    set_slot,
    straight,
    walker,
    with_log,
)


def action(accel, steer) -> EgoAction:
    as_float = lambda values: torch.as_tensor(values, dtype=torch.float32)  # noqa: E731
    return EgoAction(accel=as_float(accel), steer=as_float(steer))


def driving(world: WorldState, k: int) -> EgoAction:
    """A varied ego command for step k, different per episode."""
    B = world.batch_size
    phase = torch.arange(B, dtype=torch.float32) + 0.1 * k
    return action(1.5 * torch.sin(phase), 0.05 * torch.cos(phase))


def all_tensors(world: WorldState) -> dict[str, torch.Tensor]:
    out = {"step": world.step, "seed": world.seed}
    for part in ("ego", "agents", "params", "log", "map", "sensor"):
        record = getattr(world, part)
        for f in dataclasses.fields(record):
            out[f"{part}.{f.name}"] = getattr(record, f.name)
    return out


def assert_identical(a: WorldState, b: WorldState) -> None:
    ta, tb = all_tensors(a), all_tensors(b)
    for name in ta:
        assert torch.equal(ta[name], tb[name]), f"{name} differs"


def run(world: WorldState, steps: int) -> WorldState:
    for k in range(steps):
        world = step(world, driving(world, k))
    return world


# -- actions -----------------------------------------------------------------


def test_nan_accel_is_rejected_naming_the_field_and_episode():
    world = mixed_world(3)
    with pytest.raises(ValueError, match=r"EgoAction\.accel.*\[-8\.0, 4\.0\].*episode 1"):
        step(world, action([0.0, float("nan"), 0.0], [0.0, 0.0, 0.0]))


def test_steer_out_of_range_is_rejected_naming_the_field():
    world = mixed_world(2)
    with pytest.raises(ValueError, match=r"EgoAction\.steer.*\[-0\.6, 0\.6\].*episode 0 has 1\.0"):
        step(world, action([0.0, 0.0], [1.0, 0.0]))


def test_wrong_action_shape_is_rejected():
    world = mixed_world(2)
    with pytest.raises(ContractError, match=r"EgoAction\.accel: expected shape \[2\]"):
        step(world, action([0.0, 0.0, 0.0], [0.0, 0.0]))


# -- purity and determinism --------------------------------------------------


def test_step_does_not_touch_its_input():
    world = mixed_world(2)
    before = {k: v.clone() for k, v in all_tensors(world).items()}
    after = step(world, driving(world, 0))
    for name, value in all_tensors(world).items():
        assert torch.equal(value, before[name]), f"{name} was modified"
    assert after.step.tolist() == [1, 1]


def test_same_inputs_give_bit_identical_episodes():
    first, second = run(mixed_world(2), 50), run(mixed_world(2), 50)
    assert_identical(first, second)
    first.validate()  # the stepped state still satisfies every contract
    assert bool((first.agents.path[:, 0] == 1).all())  # the fast car did change lanes


def test_an_episode_alone_equals_the_same_episode_in_a_batch():
    batch = run(mixed_world(4), 50)
    alone = mixed_world(4)
    alone = episodes(alone, [2])
    for k in range(50):
        B = 4
        phase = torch.arange(B, dtype=torch.float32) + 0.1 * k
        alone = step(alone, action(1.5 * torch.sin(phase[2:3]), 0.05 * torch.cos(phase[2:3])))
    assert_identical(episodes(batch, [2]), alone)


# -- ego -----------------------------------------------------------------------


def test_bicycle_turns_with_radius_wheelbase_over_tan_steer():
    world = set_ego(park_ego(road_world([straight(16, 100.0)])), xy=(3.0, -2.0), yaw=0.4, speed=5.0)
    steer = 0.3
    radius = float(world.ego.wheelbase[0]) / math.tan(steer)
    centre = torch.tensor([3.0 - radius * math.sin(0.4), -2.0 + radius * math.cos(0.4)])
    for _ in range(200):
        world = step(world, action([0.0], [steer]))
        assert float((world.ego.xy[0] - centre).norm()) == pytest.approx(radius, rel=0.01)
    assert float(world.ego.yaw_rate[0]) == pytest.approx(5.0 / radius, rel=1e-4)


def test_ego_brakes_to_a_stop_and_never_reverses():
    world = set_ego(park_ego(road_world([straight(16, 100.0)])), speed=2.0)
    for _ in range(5):
        world = step(world, action([-8.0], [0.0]))
    assert float(world.ego.speed[0]) == 0.0
    # Stopping distance v^2 / (2 a) exactly, although the stop falls inside a step.
    assert float(world.ego.xy[0, 0]) == pytest.approx(2.0**2 / (2 * 8.0), rel=1e-5)
    assert float(world.ego.accel[0]) == 0.0


def test_progress_follows_the_route_and_never_decreases():
    # Progress is the box centre's arc length: the rear axle at 10 m puts it at 10 + wheelbase / 2.
    world = set_ego(road_world([straight(96, 300.0)]), xy=(10.0, 0.5), speed=10.0, progress=11.4)
    last = 11.4
    for _ in range(30):
        world = step(world, action([0.0], [0.0]))
        assert float(world.ego.progress[0]) >= last
        last = float(world.ego.progress[0])
    assert last == pytest.approx(11.4 + 30 * 1.0, abs=1e-3)


# -- replay, walkers, appearing agents -----------------------------------------


def replay_world(steps: int = 20) -> tuple[WorldState, torch.Tensor]:
    world = park_ego(road_world([straight(16, 100.0)], agents=2, log_steps=steps))
    t = torch.arange(steps, dtype=torch.float32) * world.dt
    xy = world.log.xy.clone()
    xy[0, 0, :, 0] = 5.0 * t + 0.5 * t * t
    xy[0, 0, :, 1] = torch.sin(t)
    yaw = world.log.yaw.clone()
    yaw[0, 0] = 0.1 * t
    valid = world.log.valid.clone()
    valid[0, 0] = True
    world = with_log(world, xy, yaw, valid)
    world = set_slot(world, 0, 0, agent=dict(behaviour=int(Behaviour.REPLAY), xy=xy[0, 0, 0], valid=True, speed=5.0))
    return world, xy


def test_replay_reproduces_its_log_exactly_then_leaves():
    world, xy = replay_world(20)
    for k in range(1, 25):
        world = step(world, action([0.0], [0.0]))
        if k < 20:
            assert torch.equal(world.agents.xy[0, 0], xy[0, 0, k])
            assert torch.equal(world.agents.yaw[0, 0], world.log.yaw[0, 0, k])
            assert bool(world.agents.valid[0, 0])
        else:
            assert not bool(world.agents.valid[0, 0])


def test_replay_speed_uses_only_past_samples():
    world, xy = replay_world(20)
    for _ in range(8):
        world = step(world, action([0.0], [0.0]))
    later = with_log(world, world.log.xy.clone(), world.log.yaw, world.log.valid)
    later.log.xy[0, 0, 10:] += 7.0  # change the future only (index 9 is the next sample)
    a, b = step(world, action([0.0], [0.0])), step(later, action([0.0], [0.0]))
    assert torch.equal(a.agents.speed, b.agents.speed) and torch.equal(a.agents.accel, b.agents.accel)
    moved = xy[0, 0, 9] - xy[0, 0, 8]
    heading = torch.tensor([math.cos(0.09), math.sin(0.09)])  # log yaw at index 9
    assert float(a.agents.speed[0, 0]) == pytest.approx(float(moved @ heading) / 0.1, rel=1e-4)


def test_walker_starts_pauses_and_stops_at_its_goal():
    world = park_ego(road_world([straight(16, 100.0)], agents=2))
    world = walker(
        world, 0, 0, start=(0.0, 0.0), end=(0.0, 10.0), speed=1.0, start_time=1.0, pause_at=0.5, pause_duration=2.0
    )
    track = []
    for _ in range(160):
        world = step(world, action([0.0], [0.0]))
        track.append((float(world.time[0]), float(world.agents.xy[0, 0, 1]), float(world.agents.speed[0, 0])))
    at = {round(t, 1): (y, v) for t, y, v in track}
    assert at[0.5] == (0.0, 0.0)  # waiting for start_time
    assert at[3.0][0] == pytest.approx(2.0, abs=1e-5) and at[3.0][1] == 1.0
    assert at[6.5][0] == pytest.approx(5.0, abs=1e-5) and at[6.5][1] == 0.0  # pausing half-way
    assert at[7.5][0] == pytest.approx(5.0, abs=1e-5)
    assert at[9.0][0] == pytest.approx(6.0, abs=1e-5) and at[9.0][1] == 1.0
    assert at[16.0] == (10.0, 0.0)  # arrived and standing
    assert float(world.agents.yaw[0, 0]) == pytest.approx(math.pi / 2)


def test_agent_appears_at_its_appear_time():
    world = mixed_world(1)
    assert not bool(world.agents.valid[0, 3])
    start = world.agents.s[0, 3].clone()
    for k in range(1, 13):
        world = step(world, driving(world, k))
        assert bool(world.agents.valid[0, 3]) == (k >= 10)
        if k <= 10:
            assert torch.equal(world.agents.s[0, 3], start)  # frozen until it is in the scene
    assert float(world.agents.s[0, 3]) > float(start)


# -- devices -------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
def test_step_runs_on_cuda_and_matches_cpu():
    cpu = mixed_world(4)
    gpu = cpu.to("cuda")
    for k in range(30):
        cpu = step(cpu, driving(cpu, k))
        act = driving(gpu, k)
        gpu = step(gpu, EgoAction(accel=act.accel.cuda(), steer=act.steer.cuda()))
    assert gpu.agents.xy.is_cuda and gpu.ego.xy.is_cuda
    torch.testing.assert_close(gpu.agents.xy.cpu(), cpu.agents.xy, atol=1e-3, rtol=0)
    torch.testing.assert_close(gpu.ego.xy.cpu(), cpu.ego.xy, atol=1e-3, rtol=0)
    assert torch.equal(gpu.agents.valid.cpu(), cpu.agents.valid)
