"""Per-episode results: comfort, speed limit, frozen time, progress."""

from __future__ import annotations

import math

import pytest
import torch

from sim.metrics import EpisodeAccumulator, MetricsConfig, get_metric
from sim.state import AgentKind
from tests.sim.metric_worlds import accumulate, drive, set_agent, set_ego, world

# -- comfort -------------------------------------------------------------------


def test_hard_brake_is_uncomfortable():
    states = drive(world(), [0.0] * 10 + [-6.0] * 10 + [0.0] * 10, speed=15.0)
    assert not bool(accumulate(states)["comfortable"])


def test_gentle_driving_is_comfortable():
    states = drive(world(), [0.5] * 10 + [1.0] * 20 + [-1.5] * 20, speed=8.0, yaw_rates=[0.05] * 50)
    assert bool(accumulate(states)["comfortable"])


def test_sustained_jerk_alone_is_uncomfortable_but_one_spike_is_smoothed_out():
    # Acceleration falls from +2 to -3.5 m/s^2 at 10 m/s^3: within the acceleration bounds,
    # beyond the 8.37 m/s^3 jerk bound for longer than the 0.5 s smoothing window.
    ramp = [2.0, 2.0, 1.0, 0.0, -1.0, -2.0, -3.0, -3.5, -3.5, -3.5]
    start = set_ego(world(), accel=2.0)
    assert not bool(accumulate(drive(start, ramp, speed=15.0))["comfortable"])
    # One 0.1 s step of 15 m/s^3 averages to 3 m/s^3 over the window.
    spike = [0.0] * 6 + [-1.5] * 10
    assert bool(accumulate(drive(world(), spike, speed=15.0))["comfortable"])


def test_yaw_rate_above_bound_is_uncomfortable():
    states = drive(world(), [0.0] * 20, speed=3.0, yaw_rates=[1.2] * 20)
    assert not bool(accumulate(states)["comfortable"])


def test_comfort_signals_are_the_documented_differences():
    w = world()
    prev = set_ego(w, speed=10.0, accel=1.0, yaw_rate=0.1)
    state = set_ego(w, speed=10.0, accel=0.5, yaw_rate=0.2)
    v = get_metric("comfort").compute(prev, state)
    assert math.isclose(float(v["lon_jerk"][0]), -5.0, rel_tol=1e-5)
    assert math.isclose(float(v["yaw_accel"][0]), 1.0, rel_tol=1e-5)
    assert math.isclose(float(v["lat_accel"][0]), 2.0, rel_tol=1e-5)


def test_episode_shorter_than_the_window_is_judged_on_its_mean():
    assert not bool(accumulate(drive(world(), [-6.0, -6.0], speed=15.0))["comfortable"])
    assert bool(accumulate(drive(world(), [-1.0, -1.0], speed=15.0))["comfortable"])


# -- speed limit -----------------------------------------------------------------


def test_speed_limit_compliance_formula_on_a_known_overspeed_profile():
    w = world(speed_limit=10.0)
    states = [set_ego(w, speed=12.0)] + [set_ego(w, speed=12.0)] * 50 + [set_ego(w, speed=8.0)] * 50
    r = accumulate(states)
    # 2 m/s over for 5 s of a 10 s episode: integral 10 m, allowance 2.23 m/s * 10 s.
    assert math.isclose(float(r["overspeed_integral"]), 10.0, rel_tol=1e-5)
    assert math.isclose(float(r["speed_limit_compliance"]), 1.0 - 10.0 / 22.3, rel_tol=1e-5)
    assert math.isclose(float(r["duration"]), 10.0, rel_tol=1e-6)


def test_speed_limit_compliance_clamps_at_zero():
    w = world(speed_limit=5.0)
    assert float(accumulate([set_ego(w, speed=15.0)] * 11)["speed_limit_compliance"]) == 0.0


# -- frozen ---------------------------------------------------------------------


def _frozen_fraction(w, steps=10):
    return float(accumulate([w] * (steps + 1))["frozen_fraction"])


def test_stopped_with_a_clear_path_is_frozen():
    assert _frozen_fraction(world()) == 1.0


def test_stopped_behind_an_agent_on_the_route_is_not_frozen():
    assert _frozen_fraction(set_agent(world(), 0, 22.0, 0.0)) == 0.0  # 8 m ahead of the front bumper
    crossing = set_agent(world(), 0, 25.0, 1.5, yaw=math.pi / 2, kind=AgentKind.PEDESTRIAN, length=0.6, width=0.6)
    assert _frozen_fraction(crossing) == 0.0


def test_agents_beside_or_far_ahead_do_not_excuse_standing_still():
    assert _frozen_fraction(set_agent(world(), 0, 15.0, 3.5)) == 1.0  # parallel lane
    assert _frozen_fraction(set_agent(world(), 0, 40.0, 0.0)) == 1.0  # beyond 15 m + 2.4 m
    assert _frozen_fraction(set_agent(world(), 0, 4.0, 0.0)) == 1.0  # behind


def test_moving_or_at_the_route_end_is_not_frozen():
    assert _frozen_fraction(set_ego(world(), speed=1.0)) == 0.0
    short = world(route_length=30.0)
    assert _frozen_fraction(set_ego(short, x=27.0)) == 0.0  # front bumper at 29.3 m of 30 m
    assert _frozen_fraction(set_ego(short, x=20.0)) == 1.0


def test_frozen_fraction_counts_only_the_frozen_steps():
    w = world()
    moving = set_ego(w, speed=2.0)
    r = accumulate([w, moving, moving, w, w])
    assert math.isclose(float(r["frozen_fraction"]), 0.5)


# -- progress -------------------------------------------------------------------


def test_progress_ratio_against_route_capped_by_speed_limit_and_reference():
    states = drive(world(), [0.0] * 50, speed=10.0)  # 50 m in 5 s; route 200 m, 190 m ahead
    r = accumulate(states)
    assert math.isclose(float(r["progress"]), 50.0, rel_tol=1e-4)
    assert math.isclose(float(r["reference_progress"]), 13.9 * 5.0, rel_tol=1e-4)
    assert math.isclose(float(r["progress_ratio"]), 50.0 / 69.5, rel_tol=1e-4)
    assert bool(r["making_progress"])
    r = accumulate(states, reference_progress=torch.tensor([300.0]))
    assert math.isclose(float(r["progress_ratio"]), 50.0 / 300.0, rel_tol=1e-4)
    assert not bool(r["making_progress"])


def test_progress_reference_is_the_route_left_when_shorter():
    short = world(route_length=40.0)  # rear axle at 10 m: 30 m left, less than 13.9 m/s * 5 s
    r = accumulate(drive(short, [0.0] * 50, speed=5.0))
    assert math.isclose(float(r["reference_progress"]), 30.0, rel_tol=1e-4)


def test_tiny_progress_against_tiny_reference_scores_one_and_backwards_scores_zero():
    w = world()
    r = accumulate([w] * 5, reference_progress=torch.tensor([0.5]))
    assert float(r["progress_ratio"]) == 1.0
    back = set_ego(w, progress=-1.0)
    assert float(accumulate([w, back])["progress_ratio"]) == 0.0


def test_reference_progress_shape_is_checked():
    w = world()
    with pytest.raises(ValueError, match="reference_progress"):
        accumulate([w, w], reference_progress=torch.tensor([1.0, 2.0]))


def test_batched_episodes_are_independent():
    """Episode 1 of a batch gives the same results as the same episode alone."""
    accels = [0.5] * 10 + [-6.0] * 5
    pair = set_agent(world(batch=2), 0, 22.0, 0.0, episode=1)
    both = accumulate(drive(pair, accels, speed=5.0))
    alone = accumulate(drive(set_agent(world(batch=1), 0, 22.0, 0.0), accels, speed=5.0))
    for key, value in both.items():
        assert torch.allclose(value[1:].double(), alone[key].double()), key
    assert int(both["collisions"][0]) == 0 and int(both["collisions"][1]) == 1


def test_init_from_sizes_matches_init_from_state():
    w = world(batch=2)
    a = EpisodeAccumulator.init(w)
    b = EpisodeAccumulator.init(2, w.num_agents, "cpu", dt=w.dt, config=MetricsConfig())
    assert a.comfort_window.shape == b.comfort_window.shape == (2, 5, 5)
    with pytest.raises(ValueError, match="num_agents"):
        EpisodeAccumulator.init(2)
