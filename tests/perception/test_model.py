"""Perception: the runtime chain is pure, validates its outputs and round-trips through a checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.checkpoint import CheckpointError
from core.config import ConfigError
from perception.model import Perception, PerceptionConfig
from sim.config import RasterConfig
from sim.scenarios import build_batch, load_scenario, scenario_path
from sim.sensors import render_frame
from sim.step import EgoAction
from sim.step import step as sim_step

RASTER = RasterConfig(size=32, resolution=1.0)


@pytest.fixture(scope="module")
def frames():
    """Three consecutive sensor frames of two cruising episodes on the tiny raster."""
    state = build_batch(load_scenario(scenario_path("cruising")).with_overrides({"duration": 1.0}), [0, 1])
    out = []
    for _ in range(3):
        out.append(render_frame(state, RASTER))
        state = sim_step(state, EgoAction(accel=torch.zeros(2), steer=torch.zeros(2)))
    return out


def _model(seed: int = 0) -> Perception:
    torch.manual_seed(seed)
    return Perception(PerceptionConfig.tiny(RASTER)).eval()


def _run(model: Perception, frames) -> list:
    state = model.initial_state(frames[0])
    outputs = []
    for frame in frames:
        detections, tracks, state = model.step(state, frame)
        outputs.append((detections, tracks))
    return outputs


def test_step_outputs_validate_and_step_is_pure(frames):
    model = _model()
    state = model.initial_state(frames[0]).validate()
    before = state.frames.bev.clone(), state.tracker.mean.clone()
    detections, tracks, new_state = model.step(state, frames[1])
    detections.validate()
    tracks.validate()
    new_state.validate()
    assert detections.existence.shape == (2, model.cfg.detector.slots)
    assert torch.equal(state.frames.bev, before[0]) and torch.equal(state.tracker.mean, before[1])
    again = model.step(state, frames[1])
    assert torch.equal(again[0].existence, detections.existence)
    assert torch.equal(again[1].state, tracks.state)
    assert not torch.equal(new_state.frames.pose, state.frames.pose)  # the stack moved on


def test_temperature_changes_existence_not_ranking(frames):
    model = _model()
    hot = Perception(PerceptionConfig.tiny(RASTER, temperature=3.0)).eval()
    hot.detector.load_state_dict(model.detector.state_dict())
    state = model.initial_state(frames[0])
    cold_det = model.step(state, frames[1])[0]
    hot_det = hot.step(state, frames[1])[0]
    assert torch.equal(cold_det.position, hot_det.position)
    assert not torch.allclose(cold_det.existence, hot_det.existence)


def test_position_cov_scale_widens_covariances_only(frames):
    model = _model()
    wide = Perception(PerceptionConfig.tiny(RASTER, position_cov_scale=2.5)).eval()
    wide.detector.load_state_dict(model.detector.state_dict())
    state = model.initial_state(frames[0])
    base, scaled = model.step(state, frames[1])[0], wide.step(state, frames[1])[0]
    assert torch.allclose(scaled.position_cov, 2.5 * base.position_cov)
    assert torch.equal(scaled.position, base.position) and torch.equal(scaled.existence, base.existence)
    assert torch.equal(scaled.velocity_cov, base.velocity_cov)


def test_save_load_round_trip_gives_identical_outputs(frames, tmp_path: Path):
    torch.manual_seed(3)
    model = Perception(PerceptionConfig.tiny(RASTER, temperature=0.7)).eval()
    path = model.save(tmp_path / "model.safetensors")
    loaded = Perception.load(path).eval()
    assert loaded.cfg == model.cfg
    for (d1, t1), (d2, t2) in zip(_run(model, frames), _run(loaded, frames), strict=True):
        assert torch.equal(d1.existence, d2.existence) and torch.equal(d1.position_cov, d2.position_cov)
        assert torch.equal(t1.state, t2.state)


def test_config_dict_round_trip_and_bad_fields():
    cfg = PerceptionConfig.tiny(RASTER, temperature=2.0)
    assert PerceptionConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown fields"):
        PerceptionConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ConfigError, match="temperature"):
        PerceptionConfig(temperature=0.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="position_cov_scale"):
            PerceptionConfig(position_cov_scale=bad)


def test_corrupted_checkpoint_gives_a_clear_error(tmp_path: Path):
    path = _model().save(tmp_path / "model.safetensors")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupted"):
        Perception.load(path)
    with pytest.raises(CheckpointError, match="no such file"):
        Perception.load(tmp_path / "missing.safetensors")


def test_wrong_raster_is_rejected(frames):
    model = Perception(PerceptionConfig.tiny(RasterConfig(size=64, resolution=0.5)))
    with pytest.raises(ValueError, match="frame.bev"):
        model.initial_state(frames[0])


def test_argmax_ablation_passes_decisions_from_the_same_weights(frames):
    model = _model()
    ablated = Perception(PerceptionConfig.tiny(RASTER, argmax=True)).eval()
    ablated.load_state_dict(model.state_dict())
    soft, _ = _run(model, frames)[-1]
    hard, tracks = _run(ablated, frames)[-1]
    hard.validate()
    tracks.validate()
    assert torch.equal(hard.existence, (soft.existence >= 0.5).float())
    assert torch.equal(hard.class_probs.argmax(-1), soft.class_probs.argmax(-1))
    assert bool(((hard.class_probs == 0) | (hard.class_probs == 1)).all())
    assert torch.equal(hard.position, soft.position)
    assert torch.allclose(hard.position_cov, torch.eye(2) * 0.05**2)
    assert not PerceptionConfig().argmax  # the ablation is never the default
