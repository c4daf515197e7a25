"""Prediction windows: ego-frame geometry, slot selection, presence, classes and causality.

Two short recorded drives (two 9 s scenarios, one seed, the cheap "idm-gt"
policy), cut into windows from their logs, are shared by the tests that need
real episodes; the geometry and selection rules are also checked on small
hand-built `EpisodeSamples`.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from prediction.logwindows import logged_samples
from prediction.simdata import EpisodeSamples, cut_windows, window_currents
from prediction.windows import HISTORY, HORIZON, SAMPLE_DT, TrajectoryWindows
from sim.drivelogs.index import build_index
from sim.drivelogs.recorder import SuiteOrder, record_drives
from sim.policies import make_policy
from sim.runner import rollout
from sim.scenarios import build_batch, episode_steps, resolve_suite
from sim.state import AgentKind

L = HISTORY + HORIZON
SECONDS = 9.0  # 90 sim steps and the final state = 23 samples: windows at current samples 7, 8, 9, 10
WINDOWS_PER_EPISODE = 4
STEPS_PER_SAMPLE = 4
SEED, POLICY = 5, "idm-gt"
RADIUS = 100.0  # the crosswalk lies about 100 m ahead at the start: this reaches its pedestrians by 2.8 s
# Vehicles and cyclists (cruising), then pedestrians (crosswalk_crowd).
MIXED = SuiteOrder("mixed", ("cruising", "crosswalk_crowd"))


def _scenario(name: str):
    return resolve_suite(name)[0].with_overrides({"duration": SECONDS})


@pytest.fixture(scope="module")
def drives(tmp_path_factory: pytest.TempPathFactory):
    """The two drives' logs, indexed (the suite's order)."""
    out = tmp_path_factory.mktemp("windows-logs")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: OpenMP threads only contend
    try:
        for name in reversed(MIXED.scenarios):
            record_drives(_scenario(name), [SEED], make_policy(POLICY), out, foxglove=False, suite=MIXED)
    finally:
        torch.set_num_threads(before)
    return build_index(out)


@pytest.fixture(scope="module")
def simulated(drives) -> TrajectoryWindows:
    parts = [cut_windows(logged_samples(drives, entry), radius=RADIUS) for entry in drives.drives]
    return TrajectoryWindows.concat(parts).trimmed()


@pytest.fixture(scope="module")
def cruising_states() -> dict[int, object]:
    """The world state of every sample step of the cruising episode, recorded independently of the module."""
    scenario = _scenario("cruising")
    states = {}

    def keep(state, obs, plan) -> None:
        states[int(state.step[0])] = state

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rollout(build_batch(scenario, [SEED]), make_policy(POLICY), episode_steps(scenario), observer=keep)
    finally:
        torch.set_num_threads(before)
    return states


# -- hand-built samples --------------------------------------------------------


def samples_of(
    xy: torch.Tensor,
    present: torch.Tensor,
    ego_center: torch.Tensor,
    ego_yaw: torch.Tensor,
    kind: list[int] | None = None,
) -> EpisodeSamples:
    """One episode from world positions xy [T, N, 2], present [T, N], ego_center [T, 2], ego_yaw [T]."""
    T, N = present.shape
    kind_t = torch.tensor(kind if kind is not None else [0] * N, dtype=torch.long).expand(T, N)
    size = torch.stack((torch.arange(N) + 1.0, torch.arange(N) * 0.1 + 0.5), dim=-1).expand(T, N, 2)
    # One lane of two points per sample, its first point at (sample index, 0): tells which sample a window read.
    t = torch.arange(T, dtype=torch.float64)
    lane = torch.stack((torch.stack((t, t + 1.0), -1), torch.zeros(T, 2, dtype=torch.float64)), dim=-1)  # [T, 2, 2]
    return EpisodeSamples(
        xy=xy[None].double(),
        present=present[None],
        kind=kind_t[None].contiguous(),
        size=size[None].contiguous(),
        ego_center=ego_center[None].double(),
        ego_yaw=ego_yaw[None].double(),
        lanes=lane[None, :, None].contiguous(),
        lanes_valid=torch.ones(1, T, 1, 2, dtype=torch.bool),
    ).validate()


def north_driving_ego(T: int = L) -> tuple[torch.Tensor, torch.Tensor]:
    """An ego far from the origin facing north (+y world), moving 1 m per sample: (centre [T, 2], yaw [T])."""
    t = torch.arange(T, dtype=torch.float64)
    return torch.stack((torch.full_like(t, 100.0), -50.0 + t), dim=-1), torch.full((T,), math.pi / 2)


def test_agent_ahead_is_at_plus_x_and_left_at_plus_y():
    centre, yaw = north_driving_ego()
    offsets = torch.tensor([[0.0, 10.0], [-5.0, 0.0], [0.0, -7.0]], dtype=torch.float64)  # ahead, left, behind
    xy = centre[:, None, :] + offsets  # (T, 3, 2): each agent keeps its offset as the ego moves
    windows = cut_windows(samples_of(xy, torch.ones(L, 3, dtype=torch.bool), centre, yaw)).validate()
    assert windows.xy.shape == (1, 3, L, 2)
    now = windows.xy[0, :, HISTORY - 1]
    # Nearest first: left (5 m), behind (7 m), ahead (10 m).
    torch.testing.assert_close(now, torch.tensor([[0.0, 5.0], [-7.0, 0.0], [10.0, 0.0]]), atol=1e-5, rtol=0)
    # All steps are in the current frame: the ego moves 1 m/sample forward, so at step h an agent
    # that kept its offset to the ego sits (h - current) m further along x.
    shift = torch.arange(L, dtype=torch.float32) - (HISTORY - 1)
    torch.testing.assert_close(windows.xy[0, 2, :, 0], 10.0 + shift, atol=1e-4, rtol=0)
    torch.testing.assert_close(windows.xy[0, 0, :, 1], torch.full((L,), 5.0), atol=1e-4, rtol=0)


def test_nearest_agents_within_radius_are_kept_in_order():
    centre, yaw = north_driving_ego()
    distances = torch.tensor([5.0, 50.0, 70.0, 20.0, 10.0, 30.0], dtype=torch.float64)
    ahead = torch.stack((torch.zeros(6, dtype=torch.float64), distances), dim=-1)
    xy = centre[:, None, :] + ahead
    samples = samples_of(xy, torch.ones(L, 6, dtype=torch.bool), centre, yaw)
    few = cut_windows(samples, max_agents=3, radius=60.0).validate()
    assert few.valid.tolist() == [[True, True, True]]
    torch.testing.assert_close(few.xy[0, :, HISTORY - 1, 0], torch.tensor([5.0, 10.0, 20.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(few.size[0, :, 0], torch.tensor([1.0, 5.0, 4.0]))  # the agents' own lengths
    many = cut_windows(samples, max_agents=10, radius=60.0).validate()
    assert many.valid.shape == (1, 6) and many.valid.tolist() == [[True] * 5 + [False]]  # 70 m is out of range
    torch.testing.assert_close(many.xy[0, :5, HISTORY - 1, 0], torch.tensor([5.0, 10.0, 20.0, 30.0, 50.0]))
    assert not many.present[0, 5].any() and (many.xy[0, 5] == 0).all()


def test_present_masks_follow_agents_entering_and_leaving():
    centre, yaw = north_driving_ego()
    xy = centre[:, None, :] + torch.tensor([[0.0, 10.0], [0.0, 20.0], [0.0, 30.0]], dtype=torch.float64)
    present = torch.ones(L, 3, dtype=torch.bool)
    present[:3, 0] = False  # enters at sample 3
    present[15:, 0] = False  # leaves after sample 14
    present[HISTORY - 1 :, 2] = False  # gone at the current step: no slot, though seen before
    windows = cut_windows(samples_of(xy, present, centre, yaw)).validate()
    assert windows.valid.tolist() == [[True, True, False]]
    assert windows.present[0, 0].tolist() == present[:, 0].tolist()
    assert windows.present[0, 1].all() and not windows.present[0, 2].any()
    assert (windows.xy[0, 0, :3] == 0).all() and (windows.xy[0, 0, 15:] == 0).all()
    assert not windows.scored()[0, 0] and windows.scored()[0, 1]


def test_classes_are_one_hot_of_the_agent_kind():
    centre, yaw = north_driving_ego()
    xy = centre[:, None, :] + torch.tensor([[0.0, 3.0], [0.0, 6.0], [0.0, 9.0]], dtype=torch.float64)
    kinds = [int(AgentKind.CYCLIST), int(AgentKind.VEHICLE), int(AgentKind.PEDESTRIAN)]
    windows = cut_windows(samples_of(xy, torch.ones(L, 3, dtype=torch.bool), centre, yaw, kinds)).validate()
    assert windows.class_probs[0].tolist() == [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


def test_windows_carry_the_lanes_of_their_current_step():
    centre, yaw = north_driving_ego(L + 3)
    xy = centre[:, None, :] + torch.tensor([[0.0, 10.0]], dtype=torch.float64)
    windows = cut_windows(samples_of(xy, torch.ones(L + 3, 1, dtype=torch.bool), centre, yaw))
    currents = torch.arange(HISTORY - 1, HISTORY - 1 + windows.batch_size, dtype=torch.float32)
    assert torch.equal(windows.lanes[:, 0, 0, 0], currents)  # the lane point of sample k is (k, 0)
    assert bool(windows.lanes_valid.all())


def test_future_samples_change_only_the_labels():
    centre, yaw = north_driving_ego(L + 3)
    xy = centre[:, None, :] + torch.tensor([[0.0, 10.0], [3.0, 0.0], [0.0, -40.0]], dtype=torch.float64)
    present = torch.ones(L + 3, 3, dtype=torch.bool)
    samples = samples_of(xy, present, centre, yaw, [0, 1, 2])
    base = cut_windows(samples, max_agents=2, radius=30.0)
    assert base.xy.shape[0] == 4  # current samples 7, 8, 9, 10
    # Rewrite everything after the first window's current step: agents jump, vanish, change kind and size.
    k = HISTORY - 1
    later = slice(k + 1, None)
    xy2, present2 = samples.xy.clone(), samples.present.clone()
    xy2[:, later] += 25.0
    present2[:, later, 0] = False
    kind2, size2 = samples.kind.clone(), samples.size.clone()
    kind2[:, later], size2[:, later] = 2, 9.0
    lanes2, lanes_valid2 = samples.lanes.clone(), samples.lanes_valid.clone()
    lanes2[:, later] += 7.0
    lanes_valid2[:, later] = False
    future = {"xy": xy2, "present": present2, "kind": kind2, "size": size2}
    future.update(lanes=lanes2, lanes_valid=lanes_valid2)
    changed = cut_windows(dataclasses.replace(samples, **future), max_agents=2, radius=30.0)
    first = [w.index(0) for w in (base, changed)]
    for a, b in zip(first[0].observed(), first[1].observed(), strict=True):
        assert torch.equal(a, b)
    for name in ("valid", "class_probs", "size", "lanes", "lanes_valid"):
        assert torch.equal(getattr(first[0], name), getattr(first[1], name))
    assert not torch.equal(first[0].future()[0], first[1].future()[0])


def test_stride_and_short_episodes():
    assert list(window_currents(23, 1)) == [7, 8, 9, 10]
    assert list(window_currents(23, 2)) == [7, 9]
    assert list(window_currents(L, 1)) == [HISTORY - 1]
    centre, yaw = north_driving_ego(L - 1)
    xy = centre[:, None, :] + 5.0
    short = samples_of(xy, torch.ones(L - 1, 1, dtype=torch.bool), centre, yaw)
    with pytest.raises(ValueError, match="19 samples hold no window of 20 samples"):
        cut_windows(short)
    with pytest.raises(ValueError, match="cut_windows.stride: expected an int >= 1, got 0"):
        cut_windows(short, stride=0)
    with pytest.raises(ValueError, match="cut_windows.radius: expected a finite distance > 0 m"):
        cut_windows(short, radius=-1.0)


# -- simulated episodes --------------------------------------------------------


def test_simulated_windows_validate_and_are_ordered_by_episode(drives, simulated: TrajectoryWindows):
    simulated.validate()
    assert simulated.xy.shape[0] == 2 * WINDOWS_PER_EPISODE and simulated.xy.shape[2] == L
    assert (simulated.history, simulated.horizon, simulated.dt) == (HISTORY, HORIZON, SAMPLE_DT)
    assert simulated.xy.dtype == torch.float32
    assert [d.drive for d in drives.drives] == ["cruising-000005", "crosswalk_crowd-000005"]
    # Slots are trimmed to the fullest window, every window has agents, all within the radius.
    counts = simulated.valid.sum(dim=1)
    assert int(counts.max()) == simulated.valid.shape[1] and bool((counts > 0).all())
    now = simulated.xy[:, :, HISTORY - 1].norm(dim=-1)
    assert bool((now[simulated.valid] <= RADIUS).all())
    # Invalid slots hold nothing; a present step is a step of a valid slot.
    assert not (simulated.present & ~simulated.valid[..., None]).any()
    assert bool((simulated.xy[~simulated.present] == 0).all())


def test_simulated_classes_are_one_hot(simulated: TrajectoryWindows):
    probs = simulated.class_probs[simulated.valid]  # (V, 3)
    assert bool(((probs == 0) | (probs == 1)).all()) and bool((probs.sum(-1) == 1).all())
    cruising, crowd = simulated.index(slice(0, 4)), simulated.index(slice(4, 8))
    seen = lambda w: set(w.class_probs[w.valid].argmax(-1).tolist())  # noqa: E731
    assert seen(cruising) == {int(AgentKind.VEHICLE), int(AgentKind.CYCLIST)}
    assert int(AgentKind.PEDESTRIAN) in seen(crowd)


def test_window_matches_world_state_recomputed_by_hand(simulated: TrajectoryWindows, cruising_states: dict):
    window = 1  # cruising, current sample 8
    current = (HISTORY - 1 + window) * STEPS_PER_SAMPLE
    steps = [current + (h - HISTORY + 1) * STEPS_PER_SAMPLE for h in range(L)]
    now = cruising_states[current]
    # The ego frame by hand: origin at the box centre (wheelbase / 2 ahead of the rear axle), x along the heading.
    yaw = float(now.ego.yaw[0])
    c, s = math.cos(yaw), math.sin(yaw)
    half_wb = 0.5 * float(now.ego.wheelbase[0])
    ox, oy = float(now.ego.xy[0, 0]) + half_wb * c, float(now.ego.xy[0, 1]) + half_wb * s

    def to_ego(state, n: int) -> tuple[float, float]:
        dx, dy = float(state.agents.xy[0, n, 0]) - ox, float(state.agents.xy[0, n, 1]) - oy
        return c * dx + s * dy, -s * dx + c * dy

    in_range = [
        n for n in range(now.num_agents) if bool(now.agents.valid[0, n]) and math.hypot(*to_ego(now, n)) <= RADIUS
    ]
    order = sorted(in_range, key=lambda n: math.hypot(*to_ego(now, n)))
    got = simulated.index(window)
    assert int(got.valid.sum()) == len(order) > 0
    for slot, n in enumerate(order):
        expected_present = [bool(cruising_states[k].agents.valid[0, n]) for k in steps]
        assert got.present[0, slot].tolist() == expected_present
        expected = torch.tensor([to_ego(cruising_states[k], n) for k in steps], dtype=torch.float32)
        torch.testing.assert_close(got.xy[0, slot], expected, atol=1e-3, rtol=0)
        assert int(got.class_probs[0, slot].argmax()) == int(now.agents.kind[0, n])
        size = torch.stack((now.agents.length[0, n], now.agents.width[0, n]))
        torch.testing.assert_close(got.size[0, slot], size)
