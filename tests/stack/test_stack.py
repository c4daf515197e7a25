"""The composed stack: a pure step, gradients from a planning loss into the detector, checkpoints."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from core.checkpoint import CheckpointError
from core.config import ConfigError, Timing
from perception.model import PerceptionConfig
from perception.tracking import TrackerConfig
from sim.config import RasterConfig
from sim.policies import Observation
from sim.scenarios import build_batch, load_scenario, scenario_path
from sim.sensors import render_frame
from sim.step import EgoAction
from sim.step import step as sim_step
from stack.config import StackConfig
from stack.model import Stack, harden_forecast

RASTER = RasterConfig(size=32, resolution=1.0)


@pytest.fixture(scope="module")
def frames():
    """Four consecutive sensor frames of two cruising episodes on the tiny raster."""
    state = build_batch(load_scenario(scenario_path("cruising")).with_overrides({"duration": 1.0}), [0, 1])
    out = []
    for _ in range(4):
        out.append(render_frame(state, RASTER))
        state = sim_step(state, EgoAction(accel=torch.zeros(2), steer=torch.zeros(2)))
    return out


def tiny_stack(seed: int = 0, **changes) -> Stack:
    torch.manual_seed(seed)
    return Stack(StackConfig.tiny(perception=PerceptionConfig.tiny(RASTER), **changes)).eval()


def run(stack: Stack, frames, sigma=1.0):
    state = stack.initial_state(frames[0])
    plans = []
    for frame in frames:
        plan, state = stack.step(state, frame, torch.tensor(sigma))
        plans.append(plan.validate())
    return plans, state


def test_step_is_pure_and_outputs_validate(frames):
    stack = tiny_stack()
    state = stack.initial_state(frames[0])
    out = stack.step_outputs(state, frames[1], torch.tensor([0.5, 2.0]))
    for part in (out.detections, out.tracks, out.forecast, out.plan, out.state):
        part.validate()
    again = stack.step_outputs(state, frames[1], torch.tensor([0.5, 2.0]))
    assert torch.equal(out.plan.trajectory, again.plan.trajectory)
    assert torch.equal(out.plan.sigma, torch.tensor([0.5, 2.0]))


def test_a_lane_reading_predictor_gets_the_frames_lanes(frames):
    from prediction.config import PredictorConfig

    stack = tiny_stack(predictor=PredictorConfig.tiny(lanes=True, interaction_radius=10.0))
    state = stack.initial_state(frames[0])
    for frame in frames[:3]:
        state = stack.step_outputs(state, frame, torch.tensor([1.0, 1.0])).state
    frame = frames[3]
    assert bool(frame.lanes_valid.any())
    moved = dataclasses.replace(frame, lanes=frame.lanes + torch.tensor([0.0, 2.0]))
    seen, shifted = (stack.step_outputs(state, f, torch.tensor([1.0, 1.0])).forecast for f in (frame, moved))
    valid = seen.valid
    assert bool(valid.any()) and not torch.allclose(seen.means[valid], shifted.means[valid])


def test_gradients_of_a_planning_loss_reach_the_detector_and_the_predictor(frames):
    stack = tiny_stack().train()
    state = stack.initial_state(frames[0])
    for frame in frames[1:3]:
        _, state = stack.step(state, frame, torch.tensor(1.0))
    plan, _ = stack.step(state, frames[3], torch.tensor(1.0))
    expert = torch.zeros_like(plan.trajectory[..., :2])
    (plan.trajectory[..., :2] - expert).pow(2).mean().backward()
    detector = [p.grad for p in stack.perception.detector.parameters() if p.grad is not None]
    predictor = [p.grad for p in stack.predictor.parameters() if p.grad is not None]
    assert detector and sum(g.abs().sum() for g in detector) > 0
    assert predictor and sum(g.abs().sum() for g in predictor) > 0


def test_argmax_ablation_uses_the_same_weights_and_passes_decisions(frames):
    stack = tiny_stack()
    ablation = stack.with_argmax()
    assert ablation.cfg.argmax and torch.equal(
        next(ablation.perception.detector.parameters()), next(stack.perception.detector.parameters())
    )
    state = ablation.initial_state(frames[0])
    out = ablation.step_outputs(state, frames[1], torch.tensor(1.0))
    assert set(out.detections.existence.unique().tolist()) <= {0.0, 1.0}
    assert set(out.forecast.existence.unique().tolist()) <= {0.0, 1.0}
    assert (out.forecast.weights.amax(-1) > 1 - 1e-6).all()
    out.forecast.validate()


def test_harden_forecast_keeps_the_most_likely_mode():
    from tests.planning.planning_scenes import forecast, moving, standing

    fc = forecast([torch.stack((moving(10, 0, 1, 0), standing(5, 5)))], mode_weights=(0.3, 0.7), existence=0.6)
    hard = harden_forecast(fc).validate()
    assert torch.allclose(hard.most_likely(), fc.most_likely())
    assert hard.weights[0, 0, 1] == pytest.approx(1.0) and hard.existence[0, 0] == 1.0


def test_save_load_round_trip_and_overrides(frames, tmp_path: Path):
    stack = tiny_stack(seed=3)
    path = stack.save(tmp_path / "stack.safetensors")
    loaded = Stack.load(path)
    assert loaded.cfg == stack.cfg
    a, _ = run(stack, frames[:2])
    b, _ = run(loaded, frames[:2])
    assert torch.equal(a[-1].trajectory, b[-1].trajectory)
    assert Stack.load(path, argmax=True).cfg.argmax


def test_corrupted_or_foreign_checkpoints_get_clear_errors(tmp_path: Path):
    path = tiny_stack().save(tmp_path / "stack.safetensors")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError):
        Stack.load(path)
    other = tiny_stack()
    other.perception.save(tmp_path / "perception.safetensors")
    with pytest.raises(CheckpointError, match="holds a perception model, expected stack"):
        Stack.load(tmp_path / "perception.safetensors")


def test_mismatched_module_configs_are_rejected():
    with pytest.raises(ConfigError, match="history"):
        StackConfig.tiny(predictor=dataclasses.replace(StackConfig.tiny().predictor, history=5))


@pytest.mark.parametrize("sigma", [float("nan"), float("inf")])
def test_non_finite_sigma_gets_a_clear_error(frames, sigma):
    stack = tiny_stack()
    with pytest.raises(ValueError, match="sigma: expected finite"):
        stack.step(stack.initial_state(frames[0]), frames[1], torch.tensor(sigma))


def test_a_short_closed_loop_episode_end_to_end():
    from sim.runner import rollout
    from stack.policy import StackPolicy

    scenario = load_scenario(scenario_path("crosswalk_crowd")).with_overrides({"duration": 1.0})
    state = build_batch(scenario, [0, 1])
    policy = StackPolicy(tiny_stack(), sigma=1.0, plan_every=2)
    seen = []
    final, metrics, errors = rollout(
        state, policy, 8, raster=RASTER, observer=lambda s, obs, plan: seen.append(plan.overlay)
    )
    assert errors == [None, None]
    assert final.ego.speed.shape == (2,) and torch.isfinite(final.ego.xy).all()
    assert {"score", "progress"} <= set(metrics)
    last = seen[-1]
    assert last.candidates is not None and last.forecasts is not None and last.objects_cov is not None


def test_a_held_plan_is_re_expressed_in_the_current_frame_and_advanced_in_time(frames):
    from stack.policy import PolicyState, StackPolicy

    policy = StackPolicy(tiny_stack(), plan_every=3)
    out, state = policy.act(None, Observation(frame=frames[0]))
    same, _ = policy.current_plan(state, frames[0])
    assert torch.allclose(same, out.trajectory, atol=1e-4)
    held, state2 = policy.act(state, Observation(frame=frames[1]))
    assert state2.frames == 2 and torch.equal(state2.plan_xy, state.plan_xy)
    # A world plan along +x at 10 m/s made at t = 0; at t = 0.2 s the ego stands at x = 2 facing +x:
    # step t must read the plan at (t + 1) 0.4 + 0.2 s, i.e. x = 10 ((t + 1) 0.4 + 0.2) - 2 ahead of it.
    times = (torch.arange(12) + 1) * 0.4
    plan_xy = torch.stack((10 * times, torch.zeros(12)), -1).expand(2, 12, 2)
    known = PolicyState(state.stack, 1, plan_xy, torch.full((2, 12), 10.0), torch.zeros(2), state.overlay)
    frame = dataclasses.replace(
        frames[1], time=torch.full((2,), 0.2), ego_pose=torch.tensor([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    )
    xy, speed = policy.current_plan(known, frame)
    expected = (10 * (times + 0.2) - 2.0).clamp(max=10 * 4.8 - 2.0)  # held at the plan's end
    assert torch.allclose(xy[0, :, 0], expected, atol=1e-4) and torch.allclose(xy[..., 1], torch.zeros(2, 12))
    assert torch.allclose(speed, torch.full((2, 12), 10.0))
    assert held.trajectory.shape == out.trajectory.shape
    with pytest.raises(ValueError, match="plan_every"):
        StackPolicy(tiny_stack(), plan_every=0)


def test_the_stacks_timing_reaches_its_tracker():
    """One `Timing` threads through (issue 17): perception used to build its own default."""
    coarse = Timing(sim_dt=0.2)
    tracker = TrackerConfig.for_timing(coarse, slots=8)
    stack = Stack(StackConfig.tiny(perception=PerceptionConfig.tiny(RASTER, tracker=tracker)), coarse)
    assert stack.perception.dt == coarse.sim_dt == 0.2
    assert stack.perception.tracker.config.steps_per_sample == 2  # 0.4 s samples of 0.2 s steps


def test_a_tracker_sampled_for_another_timing_is_refused():
    with pytest.raises(ConfigError, match="steps_per_sample 4, but the Timing samples 8 steps every 2"):
        Stack(StackConfig.tiny(perception=PerceptionConfig.tiny(RASTER)), Timing(sim_dt=0.2))


def test_a_checkpoint_for_another_timing_is_refused_naming_the_file(tmp_path: Path):
    coarse = Timing(sim_dt=0.2)
    tracker = TrackerConfig.for_timing(coarse, slots=8)
    path = Stack(StackConfig.tiny(perception=PerceptionConfig.tiny(RASTER, tracker=tracker)), coarse).save(
        tmp_path / "coarse.safetensors"
    )
    with pytest.raises(
        CheckpointError, match=r"coarse\.safetensors: TrackerConfig: history_steps 8, steps_per_sample 2"
    ):
        Stack.load(path)  # the default Timing samples every 4 steps
