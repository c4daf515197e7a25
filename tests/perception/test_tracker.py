"""Tracker: filter consistency, association, births, ego motion, gradients, empty input, export."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from core.config import ConfigError
from core.contracts import FlatModule
from perception.tracking import Tracker, TrackerConfig, TrackerState
from perception.tracking.motion import white_acceleration_noise
from perception.types import STATE_POS, STATE_VEL, Detections, Tracks

DT = 0.1
VEHICLE = torch.tensor([1.0, 0.0, 0.0])


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny matrices on a shared 2-core machine: OpenMP threads only contend (10x slower).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def detections(
    position: torch.Tensor,
    existence: torch.Tensor | None = None,
    pos_std: float = 0.3,
    velocity: torch.Tensor | None = None,
    vel_std: float = 1.0,
    slots: int | None = None,
) -> Detections:
    """Valid vehicle detections at `position [B, M, 2]`, padded with empty slots up to `slots`."""
    B, M = position.shape[:2]
    N = slots or M
    det = Detections.empty(B, N)
    pad = lambda base, values: torch.cat((values, base[:, M:]), 1)  # noqa: E731
    eye = torch.eye(2)
    return dataclasses.replace(
        det,
        existence=pad(det.existence, torch.ones(B, M) if existence is None else existence),
        class_probs=pad(det.class_probs, VEHICLE.expand(B, M, 3)),
        position=pad(det.position, position),
        position_cov=pad(det.position_cov, (pos_std**2 * eye).expand(B, M, 2, 2)),
        velocity=pad(det.velocity, torch.zeros(B, M, 2) if velocity is None else velocity),
        velocity_cov=pad(det.velocity_cov, (vel_std**2 * eye).expand(B, M, 2, 2)),
        size=pad(det.size, torch.tensor([4.5, 1.8]).expand(B, M, 2)),
        valid=pad(det.valid, torch.ones(B, M, dtype=torch.bool)),
    )


def run(tracker: Tracker, frames: list[Detections], poses: list[torch.Tensor] | None = None):
    """Step through `frames`; returns the per-step Tracks and the final state."""
    B = frames[0].batch_size
    state = tracker.initial_state(B)
    out = []
    for i, det in enumerate(frames):
        pose = torch.zeros(B, 3) if poses is None else poses[i]
        tracks, state = tracker.step(state, det, pose, DT)
        out.append(tracks)
    return out, state


def best_slot(state: TrackerState, near: torch.Tensor) -> torch.Tensor:
    """[B] slot whose position is closest to `near [B, 2]`, among slots with existence > 0.5."""
    dist = (state.mean[..., STATE_POS] - near.unsqueeze(1)).norm(dim=-1)
    return torch.where(state.existence > 0.5, dist, torch.full_like(dist, math.inf)).argmin(1)


def test_config_names_bad_fields():
    for field, value in [("slots", 0), ("detection_prob", 1.0), ("accel_std", (1.0, 1.0)), ("clutter_density", 0.0)]:
        with pytest.raises(ConfigError, match=f"TrackerConfig.{field}"):
            TrackerConfig(**{field: value})


def test_default_history_matches_timing():
    cfg = TrackerConfig()
    assert cfg.history_steps == 8 and cfg.steps_per_sample == 4 and cfg.buffer_steps == 29


def test_single_target_is_consistent():
    """Truth drawn from the filter's own model: position variance settles, NEES averages ~4 (chi-square)."""
    gen = torch.Generator().manual_seed(7)
    B, steps, cfg = 16, 200, TrackerConfig(slots=4)
    q = cfg.accel_std[0] ** 2
    chol_q = torch.linalg.cholesky(white_acceleration_noise(torch.tensor([DT], dtype=torch.float64))[0] * q)
    f = torch.eye(4, dtype=torch.float64) + DT * torch.diag(torch.ones(2, dtype=torch.float64), 2)
    r = torch.tensor([[0.25, 0.05], [0.05, 0.16]])
    truth = torch.tensor([0.0, 0.0, 5.0, 1.0], dtype=torch.float64).repeat(B, 1)
    tracker, state = Tracker(cfg), None
    state = tracker.initial_state(B)
    nees, pos_var = [], []
    for _ in range(steps):
        truth = truth @ f.T + torch.randn(B, 4, generator=gen, dtype=torch.float64) @ chol_q.T
        z = truth[:, None, :2].float() + torch.randn(B, 1, 2, generator=gen) @ torch.linalg.cholesky(r).T
        v = truth[:, None, 2:].float() + torch.randn(B, 1, 2, generator=gen)
        det = dataclasses.replace(detections(z, velocity=v, slots=3), position_cov=r.expand(B, 3, 2, 2).clone())
        tracks, state = tracker.step(state, det, torch.zeros(B, 3), DT)
        slot = state.existence.argmax(1)
        rows = torch.arange(B)
        err = (truth - state.mean[rows, slot].double()).unsqueeze(-1)
        cov = state.cov[rows, slot].double()
        nees.append((err.transpose(-1, -2) @ torch.linalg.solve(cov, err)).flatten())
        pos_var.append(float(cov[:, 0, 0].mean()))
    tracks.validate()
    average = float(torch.stack(nees[20:]).mean())
    # 16 x 180 correlated samples of a chi-square with 4 dof: the mean is 4 within a few tenths.
    assert 3.5 < average < 4.5, average
    assert pos_var[-1] < 0.5 * pos_var[0]
    assert float(state.existence.max(1).values.min()) > 0.99


def test_two_separated_targets_keep_their_slots():
    B, steps = 2, 40
    t = torch.arange(steps, dtype=torch.float32) * DT
    a = torch.stack((5.0 * t, torch.full_like(t, 10.0)), -1)  # (T, 2)
    b = torch.stack((20.0 - 3.0 * t, torch.full_like(t, -10.0)), -1)
    frames = [detections(torch.stack((a[i], b[i])).expand(B, 2, 2).clone(), slots=4) for i in range(steps)]
    tracker = Tracker(TrackerConfig(slots=6))
    state = tracker.initial_state(B)
    slots_a, slots_b = [], []
    for i, det in enumerate(frames):
        _, state = tracker.step(state, det, torch.zeros(B, 3), DT)
        if i >= 3:
            slots_a.append(best_slot(state, a[i].expand(B, 2)))
            slots_b.append(best_slot(state, b[i].expand(B, 2)))
    slots_a, slots_b = torch.stack(slots_a), torch.stack(slots_b)
    assert bool((slots_a == slots_a[0]).all()) and bool((slots_b == slots_b[0]).all())
    assert bool((slots_a[0] != slots_b[0]).all())
    assert float((state.existence > 0.5).sum(1).float().mean()) == 2.0
    vel = state.mean[torch.arange(B), slots_a[-1], STATE_VEL]
    assert torch.allclose(vel, torch.tensor([5.0, 0.0]).expand(B, 2), atol=0.3)


def test_crossing_targets_stay_finite():
    steps = 40
    t = torch.arange(steps, dtype=torch.float32) * DT - 2.0  # they meet at t = 0
    a = torch.stack((5.0 * t, 5.0 * t), -1)
    b = torch.stack((5.0 * t, -5.0 * t), -1)
    noise = torch.randn(steps, 2, 2, generator=torch.Generator().manual_seed(3)) * 0.2
    frames = [detections((torch.stack((a[i], b[i])) + noise[i]).unsqueeze(0)) for i in range(steps)]
    outputs, state = run(Tracker(TrackerConfig(slots=4)), frames)
    for tracks in outputs:
        tracks.validate()
    state.validate()
    assert float(state.existence.sum()) == pytest.approx(2.0, abs=0.3)


def test_detection_with_zero_existence_creates_no_track():
    frames = [detections(torch.tensor([[[10.0, 2.0]]]), existence=torch.zeros(1, 1)) for _ in range(10)]
    outputs, state = run(Tracker(TrackerConfig(slots=3)), frames)
    assert float(state.existence.max()) == 0.0
    assert not bool(outputs[-1].valid.any())


def test_low_existence_detection_creates_low_existence_track():
    frames = [detections(torch.tensor([[[10.0, 2.0]]]), existence=torch.full((1, 1), 0.2))]
    _, state = run(Tracker(TrackerConfig(slots=3)), frames)
    assert float(state.existence.max()) == pytest.approx(0.2, abs=1e-6)


def ego_poses(steps: int, speed: float, yaw_rate: float) -> list[torch.Tensor]:
    """World poses of an ego driving an arc from (3, -2) heading 0.5 rad."""
    poses, x, y, yaw = [], 3.0, -2.0, 0.5
    for _ in range(steps):
        poses.append(torch.tensor([[x, y, yaw]]))
        x, y, yaw = x + speed * DT * math.cos(yaw), y + speed * DT * math.sin(yaw), yaw + yaw_rate * DT
    return poses


def to_ego(point: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
    """World point [2] -> ego frame of `pose [1, 3]`, [1, 1, 2]."""
    c, s = math.cos(float(pose[0, 2])), math.sin(float(pose[0, 2]))
    dx, dy = point - pose[0, :2]
    return torch.stack((c * dx + s * dy, -s * dx + c * dy)).reshape(1, 1, 2)


@pytest.mark.parametrize("noise_std", [0.0, 0.1])
def test_static_world_object_stays_static_when_ego_moves_and_turns(noise_std):
    steps, landmark = 60, torch.tensor([25.0, 8.0])
    poses = ego_poses(steps, speed=8.0, yaw_rate=0.3)
    noise = torch.randn(steps, 1, 1, 2, generator=torch.Generator().manual_seed(1)) * noise_std
    frames = [detections(to_ego(landmark, p) + noise[i], pos_std=0.1) for i, p in enumerate(poses)]
    outputs, state = run(Tracker(TrackerConfig(slots=3)), frames, poses)
    slot = int(state.existence.argmax())
    velocity, velocity_std = state.mean[0, slot, STATE_VEL], state.cov[0, slot].diagonal()[STATE_VEL].sqrt()
    position_error = state.mean[0, slot, STATE_POS] - to_ego(landmark, poses[-1])[0, 0]
    # Exact without noise; with noise, within the filter's own 3 sigma.
    assert bool((velocity.abs() < 1e-3 + 3 * noise_std / 0.1 * velocity_std).all()), (velocity, velocity_std)
    assert float(position_error.norm()) < 1e-3 + 3 * noise_std
    # The history is in the current frame: a static object sits still across every past step.
    history = outputs[-1].state[0, slot, :, STATE_POS]
    assert bool(outputs[-1].step_valid[0, slot].all())
    assert float((history - history[-1]).norm(dim=-1).max()) < 1e-3 + 3 * noise_std


def test_history_samples_are_sample_dt_apart():
    cfg = TrackerConfig(slots=2)
    steps, velocity = cfg.buffer_steps + 2, torch.tensor([6.0, -2.0])
    frames = [detections((velocity * DT * i).reshape(1, 1, 2), pos_std=0.05) for i in range(steps)]
    outputs, _ = run(Tracker(cfg), frames)
    early = outputs[5]  # 6 steps in: only the current and one earlier sample exist
    slot = int(early.existence.argmax())
    assert early.step_valid[0, slot].tolist() == [False] * 6 + [True, True]
    tracks = outputs[-1]
    slot = int(tracks.existence.argmax())
    assert bool(tracks.step_valid[0, slot].all())
    gaps = tracks.state[0, slot, 1:, STATE_POS] - tracks.state[0, slot, :-1, STATE_POS]  # (H-1, 2)
    sample_dt = cfg.steps_per_sample * DT
    assert torch.allclose(gaps, (velocity * sample_dt).expand_as(gaps), atol=0.1)


def test_gradients_reach_detection_positions_and_existence():
    tracker = Tracker(TrackerConfig(slots=3))
    start = detections(torch.tensor([[[10.0, 2.0], [-5.0, 4.0]]]), existence=torch.tensor([[0.9, 0.7]]))
    position = torch.tensor([[[10.5, 2.1], [-5.1, 4.2]]], requires_grad=True)
    existence = torch.tensor([[0.8, 0.6]], requires_grad=True)
    later = dataclasses.replace(start, position=position, existence=existence)
    state = tracker.initial_state(1)
    _, state = tracker.step(state, start, torch.zeros(1, 3), DT)
    tracks, _ = tracker.step(state, later, torch.zeros(1, 3), DT)
    loss = (tracks.current[..., STATE_POS] * tracks.existence.unsqueeze(-1)).sum() + tracks.existence.sum()
    loss.backward()
    for grad in (position.grad, existence.grad):
        assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().min()) > 0


def test_empty_detections_keep_state_finite_and_tracks_fade():
    tracker = Tracker(TrackerConfig(slots=3))
    seen = [detections(torch.tensor([[[10.0 + 0.5 * i, 2.0]]])) for i in range(10)]
    empty = [Detections.empty(1, 4)] * 30
    invisible = [dataclasses.replace(seen[0], valid=torch.zeros(1, 1, dtype=torch.bool))] * 30
    outputs, state = run(tracker, seen + empty + invisible)
    for tracks in outputs:
        tracks.validate()
    state.validate()
    assert float(outputs[9].existence.max()) > 0.9
    assert float(state.existence.max()) < 1e-6


def test_more_detections_than_slots_keeps_the_most_probable():
    existence = torch.tensor([[0.1, 0.9, 0.3, 0.8, 0.5, 0.2, 0.7, 0.05]])
    position = torch.stack((torch.arange(8.0) * 10, torch.zeros(8)), -1).unsqueeze(0)
    tracks, _ = Tracker(TrackerConfig(slots=4)).step(
        Tracker(TrackerConfig(slots=4)).initial_state(1), detections(position, existence), torch.zeros(1, 3), DT
    )
    tracks.validate()
    kept = torch.sort(tracks.existence[0], descending=True).values
    assert torch.allclose(kept, torch.tensor([0.9, 0.8, 0.7, 0.5]))
    assert sorted(tracks.current[0, :, 0].round().tolist()) == [10.0, 30.0, 40.0, 60.0]


def test_step_is_pure_and_rejects_bad_pose():
    tracker = Tracker(TrackerConfig(slots=3))
    state = tracker.initial_state(2)
    det = detections(torch.ones(2, 1, 2))
    before = {name: value.clone() for name, value in state.to_flat().items()}
    tracker.step(state, det, torch.zeros(2, 3), DT)
    assert all(torch.equal(before[name], value) for name, value in state.to_flat().items())
    with pytest.raises(ValueError, match="ego_pose"):
        tracker.step(state, det, torch.zeros(2, 2), DT)


def _tracker_step(tracker: Tracker, named: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state, det = TrackerState.from_flat(named, "state"), Detections.from_flat(named, "detections")
    tracks, new_state = tracker.step(state, det, named["ego_pose"], named["dt"])
    return {**tracks.to_flat("tracks"), **new_state.to_flat("new_state")}


def tracker_graph() -> FlatModule:
    """`Tracker.step` on flat tensors, with the period an input (deploy's graph fixes it)."""
    inputs = [*TrackerState.flat_names("state"), *Detections.flat_names("detections"), "ego_pose", "dt"]
    outputs = Tracks.flat_names("tracks") + TrackerState.flat_names("new_state")
    return FlatModule(Tracker(TrackerConfig(slots=4)), inputs, outputs, _tracker_step).eval()


def export_inputs(batch: int, dt: float = DT) -> tuple[torch.Tensor, ...]:
    tracker = Tracker(TrackerConfig(slots=4))
    _, state = tracker.step(
        tracker.initial_state(batch), detections(torch.ones(batch, 2, 2)), torch.zeros(batch, 3), DT
    )
    det = detections(torch.ones(batch, 2, 2) * 1.1)
    named = {**state.to_flat("state"), **det.to_flat("detections")}
    named.update(ego_pose=torch.full((batch, 3), 10 * dt), dt=torch.full((batch,), dt))
    return tuple(named[name] for name in tracker_graph().inputs)


def test_step_exports_with_torch_export_and_dynamic_batch():
    graph = tracker_graph()
    traced = export_inputs(2)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(graph, traced, dynamic_shapes=(tuple({0: batch} for _ in traced),))
    inputs = export_inputs(5, dt=0.25)  # another batch, period and pose than the traced ones
    for got, want in zip(program.module()(*inputs), graph(*inputs), strict=True):
        assert torch.equal(got, want)
    tracks = Tracks.from_flat(dict(zip(graph.outputs, graph(*inputs), strict=False)), "tracks")
    tracks.validate()


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::DeprecationWarning")
def test_step_exports_to_onnx_with_dynamic_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    graph = tracker_graph()
    names, outputs = list(graph.inputs), list(graph.outputs)
    path = tmp_path / "tracker.onnx"
    torch.onnx.export(
        graph,
        export_inputs(2),
        str(path),
        input_names=names,
        output_names=outputs,
        opset_version=17,
        dynamo=False,
        dynamic_axes={name: {0: "batch"} for name in names + outputs},
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = export_inputs(3, dt=0.25)  # another batch, period and pose than the traced ones
    # The exporter drops inputs the step never reads (detection heading), so feed what the graph declares.
    declared = {i.name for i in session.get_inputs()}
    assert {"dt", "ego_pose", "detections.position", "state.mean"} <= declared
    feed = {name: value.numpy() for name, value in zip(names, inputs, strict=True) if name in declared}
    got = session.run(None, feed)
    for value, want in zip(got, graph(*inputs), strict=True):
        assert value.shape == tuple(want.shape)
        assert torch.allclose(torch.from_numpy(value).to(want.dtype), want, atol=1e-4, rtol=1e-4)


def test_class_probs_size_and_age_follow_associated_detections():
    tracker = Tracker(TrackerConfig(slots=2))
    first = detections(torch.tensor([[[10.0, 0.0]]]))
    walker = dataclasses.replace(
        first, class_probs=torch.tensor([[[0.0, 1.0, 0.0]]]), size=torch.tensor([[[0.6, 0.6]]])
    )
    _, state = run(tracker, [first] + [walker] * 30)
    slot = int(state.existence.argmax())
    assert float(state.class_probs[0, slot, 1]) > 0.95
    assert float(state.class_probs[0, slot].sum()) == pytest.approx(1.0, abs=1e-5)
    assert torch.allclose(state.size[0, slot], torch.tensor([0.6, 0.6]), atol=0.1)
    assert float(state.age[0, slot]) == pytest.approx(30 * DT, abs=1e-4)


def test_random_inputs_keep_every_output_valid():
    """Random clutter, poses, periods and covariance scales from 1 cm to 10 m: outputs stay valid contracts."""
    gen = torch.Generator().manual_seed(11)
    B, N, tracker = 3, 6, Tracker(TrackerConfig(slots=5))
    state, pose = tracker.initial_state(B), torch.zeros(B, 3)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen)

    for step in range(40):
        std = 10 ** (rand(B, N) * 3 - 2)  # (B, N) in [0.01, 10] m
        tilt = torch.randn(B, N, 2, 2, generator=gen) * 0.3 + torch.eye(2)
        det = detections(torch.randn(B, N, 2, generator=gen) * 15, existence=rand(B, N))
        det = dataclasses.replace(
            det,
            position_cov=std[..., None, None] ** 2 * (tilt @ tilt.transpose(-1, -2) + 0.01 * torch.eye(2)),
            valid=(rand(B, N) < 0.7) & torch.tensor(step % 10 < 7),  # silent stretches let covariances grow
        )
        pose = pose + torch.cat((rand(B, 2) - 0.5, (rand(B, 1) - 0.5) * 0.4), -1)
        tracks, state = tracker.step(state, det, pose, rand(B) * 0.4 + 0.05)
        tracks.validate()
        state.validate()


def test_duplicate_detections_of_one_object_leave_one_track():
    # Two slots on the same car every frame (0.2 m apart) and a second car 6 m away.
    position = torch.tensor([[[10.0, 0.0], [10.2, 0.1], [16.0, 0.0]]])
    frames = [detections(position, torch.tensor([[0.9, 0.8, 0.9]]), slots=6) for _ in range(20)]
    _, merged = run(Tracker(TrackerConfig(slots=8)), frames)
    _, unmerged = run(Tracker(TrackerConfig(slots=8, merge_scale=0.0)), frames)

    def believed_near(state, x):
        near = (state.mean[0, :, 0] - x).abs() < 1.0
        return float(state.existence[0][near].sum())

    assert believed_near(merged, 10.0) == pytest.approx(1.0, abs=0.15)  # one car, not two
    assert believed_near(unmerged, 10.0) > 1.5  # without the suppression the car is counted twice
    assert believed_near(merged, 16.0) == pytest.approx(1.0, abs=0.1)  # the other car is untouched


def test_suppression_spares_distinct_well_localised_neighbours():
    from perception.tracking.merge import duplicate_suppression

    position = torch.tensor([[[0.0, 0.0], [0.6, 0.0], [0.05, 0.0]]])
    cov = (0.15**2 * torch.eye(2)).expand(1, 3, 2, 2)
    existence = torch.tensor([[0.9, 0.8, 0.5]])
    keep = duplicate_suppression(position, cov, existence, 1.0)
    assert keep[0, 0] == 1.0  # the most likely track is never suppressed
    assert keep[0, 1] > 0.95  # a pedestrian 0.6 m away (about 2.8 sigma)
    assert keep[0, 2] < 0.2  # a second estimate 5 cm from the first
    position.requires_grad_(True)
    duplicate_suppression(position, cov, existence, 1.0).sum().backward()
    assert torch.isfinite(position.grad).all() and position.grad.abs().sum() > 0
