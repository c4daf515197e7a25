"""Training job, model files, the public API and the command line, on tiny generated data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from core.checkpoint import CheckpointError
from core.config import ConfigError
from core.io import jsonable
from core.training import check_same_job
from prediction import api
from prediction.checkpoint import load_predictor
from prediction.config import PredictorConfig
from prediction.evaluate import evaluate_groups, evaluate_scene
from prediction.train import IMPLIED_JOB, PredictionTrainConfig, kl_beta, rotate_windows, train
from prediction.windows import HISTORY, HORIZON, SAMPLE_DT, TrajectoryWindows, no_lanes
from sim.drivelogs.recorder import record_drives
from sim.policies import make_policy
from sim.scenarios import resolve_suite
from stack.cli import main
from tests.prediction.conftest import walking_windows

TINY = PredictorConfig.tiny(interaction_radius=10.0)


@pytest.fixture
def walks() -> TrajectoryWindows:
    return walking_windows(windows=12, agents=4, seed=3)


@pytest.fixture(scope="module")
def drive_logs(tmp_path_factory) -> Path:
    """One recorded drive just long enough for one prediction window (79 steps and the final state)."""
    out = tmp_path_factory.mktemp("prediction-logs")
    scenario = resolve_suite("cruising")[0].with_overrides({"duration": 7.9})
    record_drives(scenario, [0], make_policy("idm-gt"), out, foxglove=False)
    return out


def job(tmp_path: Path, **changes) -> PredictionTrainConfig:
    base = dict(out=tmp_path / "run", predictor=TINY, steps=8, batch_size=4,
                warmup_steps=1, checkpoint_every=4, kl_anneal_steps=4, progress=False)  # fmt: skip
    base.update(changes)
    return PredictionTrainConfig(**base)


def test_training_lowers_the_loss_and_writes_a_loadable_model(tmp_path, walks):
    path = train(job(tmp_path, steps=40, checkpoint_every=40, lr=1e-2), walks)
    model, meta = load_predictor(path)
    assert meta["steps"] == 40 and meta["train_seconds"] > 0
    first = load_predictor(tmp_path / "run" / "step-000040.safetensors")
    assert isinstance(first[0], type(model))
    windows = walking_windows(windows=12, agents=4, seed=3)
    untrained = api.TrajectoryPredictor(type(model)(TINY))
    trained = api.TrajectoryPredictor(model)
    before = evaluate_scene(untrained, windows, kde_samples=0)
    after = evaluate_scene(trained, windows, kde_samples=0)
    assert after["nll_step"] < before["nll_step"]


def test_a_stopped_and_resumed_job_ends_where_an_uninterrupted_one_does(tmp_path, walks):
    straight = train(job(tmp_path / "a"), walks)
    train(job(tmp_path / "b", stop_at=4), walks)
    resumed = train(job(tmp_path / "b", resume=True), walks)
    a, b = load_predictor(straight)[0].state_dict(), load_predictor(resumed)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_a_changed_job(tmp_path, walks):
    train(job(tmp_path, stop_at=4), walks)
    with pytest.raises(ValueError, match="kl_weight"):
        train(job(tmp_path, kl_weight=2.0, resume=True), walks)


def test_bad_job_configs_name_the_field(tmp_path, walks):
    with pytest.raises(ConfigError, match="scene"):
        job(tmp_path, ethucy_root=tmp_path)
    with pytest.raises(ConfigError, match="PredictionTrainConfig.logs: expected at least one log folder"):
        train(job(tmp_path))
    with pytest.raises(ConfigError, match="kl_min"):
        job(tmp_path, kl_min=-1.0)
    with pytest.raises(ConfigError, match="PredictorConfig.latent"):
        PredictorConfig(latent=0)


def test_kl_weight_rises_from_zero_to_its_final_value():
    cfg = PredictionTrainConfig(logs=(Path("x"),), kl_weight=2.0, kl_anneal_steps=100)
    assert kl_beta(0, cfg) < 0.02 and kl_beta(50, cfg) == pytest.approx(1.0) and kl_beta(200, cfg) > 1.99


def test_rotation_turns_whole_windows_and_keeps_distances():
    windows = walking_windows()
    rotated = rotate_windows(windows, torch.full((3,), torch.pi / 2))
    present = windows.present
    assert torch.allclose(rotated.xy[..., 0][present], -windows.xy[..., 1][present], atol=1e-5)
    d0 = (windows.xy[:, 0] - windows.xy[:, 2]).norm(dim=-1)
    d1 = (rotated.xy[:, 0] - rotated.xy[:, 2]).norm(dim=-1)
    assert torch.allclose(d0, d1, atol=1e-5)


def test_corrupted_model_files_are_refused(tmp_path, walks):
    path = train(job(tmp_path, steps=1, checkpoint_every=1), walks)
    data = path.read_bytes()
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        api.load(broken)


def test_api_predicts_positions_for_every_agent_observed_now(tmp_path, walks):
    model = api.load(train(job(tmp_path, steps=2), walks))
    windows = walking_windows()
    obs_xy, obs_valid = windows.observed()
    samples = model.predict_positions(obs_xy, obs_valid, num_samples=5, seed=7)
    assert samples.shape == (3, 5, 5, 12, 2)
    assert torch.equal(samples, model.predict_positions(obs_xy, obs_valid, num_samples=5, seed=7))
    assert not torch.equal(samples, model.predict_positions(obs_xy, obs_valid, num_samples=5, seed=8))
    assert bool((samples[:, -1] == 0).all())  # the empty slot
    forecast = model.forecast(obs_xy, obs_valid).validate()
    assert torch.equal(forecast.valid, obs_valid[..., -1])
    with pytest.raises(ValueError, match="obs_xy: expected 8 observed steps"):
        model.predict_positions(obs_xy[:, :, 1:], obs_valid[:, :, 1:])
    bad = obs_xy.clone()
    bad[0, 0, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="window 0, agent 0, step 3"):
        model.forecast(bad, obs_valid)
    with pytest.raises(ValueError, match="num_samples"):
        model.predict_positions(obs_xy, obs_valid, num_samples=0)


def test_api_reads_the_agents_classes_and_groups_pool_one_run(tmp_path, walks):
    """Vehicles given as vehicles move as unicycles (a different forecast from the pedestrian default), and
    the per-class groups of `evaluate_groups` split the agents of one run: their counts and sums add up."""
    model = api.load(train(job(tmp_path, steps=2), walks))
    windows = walking_windows(pedestrians=False)
    obs_xy, obs_valid = windows.observed()
    as_vehicles = model.forecast(obs_xy, obs_valid, class_probs=windows.class_probs, size=windows.size)
    assert torch.equal(as_vehicles.class_probs, windows.class_probs)
    assert not torch.allclose(as_vehicles.means, model.forecast(obs_xy, obs_valid).means)
    mixed = dataclasses.replace(windows, class_probs=windows.class_probs.clone())
    mixed.class_probs[:, 0] = torch.tensor([0.0, 1.0, 0.0])  # the first agent of every window walks
    walks = torch.zeros_like(mixed.valid)
    walks[:, 0] = True
    groups = {"all": mixed.valid, "walkers": walks, "drivers": ~walks}
    totals = evaluate_groups(model, mixed, groups, kde_samples=0, coverage_samples=0, chunk=2)
    assert totals["all"].count == int(mixed.scored().sum()) == totals["walkers"].count + totals["drivers"].count
    both = totals["walkers"] + totals["drivers"]
    assert all(abs(both.sums[k] - v) < 1e-6 * max(1.0, abs(v)) for k, v in totals["all"].sums.items())
    with pytest.raises(ValueError, match=r"groups\['walkers'\]"):
        evaluate_groups(model, mixed, {"walkers": walks[:, :2]}, kde_samples=0, coverage_samples=0)


def test_api_baselines_have_the_same_interface():
    windows = walking_windows()
    obs_xy, obs_valid = windows.observed()
    for name in ("cv", "cv-sampled"):
        report = evaluate_scene(api.baseline(name), windows, kde_samples=50)
        assert report["agents"] == int(windows.scored().sum()) and report["min_ade"] <= report["ade"] + 1e-6
    with pytest.raises(ValueError, match="baseline"):
        api.baseline("oracle")


def test_command_line_trains_and_evaluates(tmp_path, drive_logs, capsys):
    out = tmp_path / "cli"
    assert main(["prediction", "train", "--logs", str(drive_logs), "--out", str(out), "--steps", "2",
                 "--batch-size", "2", "--latent", "3", "--hidden", "8", "--decoder-hidden", "8", "--no-progress",
                 "--checkpoint-every", "2", "--warmup-steps", "0"]) == 0  # fmt: skip
    report = tmp_path / "report.json"
    assert main(["prediction", "evaluate", "--model", str(out / "final.safetensors"), "--logs", str(drive_logs),
                 "--kde-samples", "10", "--out", str(report)]) == 0  # fmt: skip
    assert report.is_file() and '"min_ade"' in report.read_text()
    assert main(["prediction", "evaluate", "--baseline", "cv"]) == 2
    assert "either --ethucy" in capsys.readouterr().err


def test_windows_from_another_timing_are_refused(tmp_path):
    windows = dataclasses.replace(walking_windows(), dt=0.1)
    with pytest.raises(ConfigError, match="dt"):
        train(PredictionTrainConfig(out=tmp_path / "r", predictor=TINY, steps=1, progress=False), windows)


def fork_windows(windows: int = 48) -> TrajectoryWindows:
    """Walkers that share one history (1.2 m/s along +x) and then turn 90 degrees left or right at
    random: the future is bimodal given the past, the case a collapsed prior cannot represent."""
    g = torch.Generator().manual_seed(7)
    t = torch.arange(HISTORY + HORIZON, dtype=torch.float32) * SAMPLE_DT
    side = torch.where(torch.rand(windows, generator=g) < 0.5, -1.0, 1.0)
    after = (t - t[HISTORY - 1]).clamp_min(0.0)  # s since the current step
    x = 1.2 * torch.minimum(t, t[HISTORY - 1]).expand(windows, -1)
    y = side[:, None] * 1.2 * after
    xy = torch.stack((x, y), dim=-1)[:, None] + 0.01 * torch.randn(windows, 1, t.numel(), 2, generator=g)
    present = torch.ones(windows, 1, t.numel(), dtype=torch.bool)
    class_probs = torch.tensor([0.0, 1.0, 0.0]).expand(windows, 1, 3).clone()
    return TrajectoryWindows(xy, present, class_probs, torch.full((windows, 1, 2), 0.5),
                             torch.ones(windows, 1, dtype=torch.bool), **no_lanes(windows)).validate()  # fmt: skip


@pytest.mark.parametrize("objective", ["wta"])
def test_mode_assignment_keeps_both_branches_of_a_fork(tmp_path, objective):
    """Trained on the fork, the forecast holds both turns as modes of real weight (no collapse) and its
    best mode follows each walker's branch."""
    windows = fork_windows()
    cfg = job(tmp_path, objective=objective, steps=150, batch_size=16, lr=1e-2, rotate=False,
              checkpoint_every=150, predictor=PredictorConfig.tiny(latent=4))  # fmt: skip
    predictor = api.load(train(cfg, windows))
    scores = evaluate_scene(predictor, windows, kde_samples=0, coverage_samples=0)
    assert scores["modes_used"] >= 2.0 and scores["top_weight"] < 0.8
    forecast = predictor.forecast(*windows.observed())
    truth, _ = windows.future()
    best = (forecast.means - truth[:, :, None]).norm(dim=-1).mean(dim=-1).min(dim=-1).values
    assert float(best.mean()) < 0.5  # m; a single mean path between the branches is ~2.6 m off on average


def test_a_job_stored_before_objectives_existed_resumes_only_as_the_elbo():
    """Old checkpoints hold no `objective`: they trained the ELBO, so resuming them under today's default is
    refused, naming the field, and resuming them as the ELBO is not."""
    today = jsonable(PredictionTrainConfig(logs=(Path("x"),)))
    stored = {name: value for name, value in today.items() if name != "objective"}
    same = lambda name, value: value  # noqa: E731
    with pytest.raises(ValueError, match="objective is 'wta' but old.safetensors was trained with 'elbo'"):
        check_same_job(today, stored, (), "old.safetensors", same, IMPLIED_JOB)
    check_same_job({**today, "objective": "elbo"}, stored, (), "old.safetensors", same, IMPLIED_JOB)
