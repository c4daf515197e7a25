"""Perception jobs: pretrain, finetune, resume after a kill, evaluate, and the command line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.checkpoint import CheckpointError, load_checkpoint
from core.config import ConfigError
from core.training import FINAL_NAME, batch_index, latest_checkpoint
from perception.evaluate import CALIBRATED_NAME, REPORT_NAME, EvaluateConfig, evaluate, format_report
from perception.jobs.finetune import FinetuneConfig, finetune
from perception.jobs.pretrain import PretrainConfig, pretrain, temporal_partner
from perception.model import Perception, PerceptionConfig
from sim.config import RasterConfig
from sim.drivelogs.format import GHOSTS_TOPIC, DriveLogWriter, drive_metadata, read_drive
from sim.drivelogs.recorder import record_drives
from sim.policies import make_policy
from sim.scenarios import load_scenario, scenario_path
from stack.cli import main as drivestack

RASTER = RasterConfig(size=32, resolution=1.0)
MODEL = PerceptionConfig.tiny(RASTER)
ITEMS = {"every": 3, "max_objects": 16}


def _dataset(root: Path, seeds: tuple[int, ...], scenario: str = "cruising") -> Path:
    # 1 s of cruising = 10 sim steps and the final state; every 3rd frame an item: steps 0, 3, 6, 9 of each
    # drive. idm-gt works on any raster.
    short = load_scenario(scenario_path(scenario)).with_overrides({"duration": 1.0})
    record_drives(short, list(seeds), make_policy("idm-gt"), root, raster=RASTER, foxglove=False)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: OpenMP threads only contend
    base = tmp_path_factory.mktemp("jobs")
    train = _dataset(base / "train", (0, 1))
    test = _dataset(base / "test", (10, 11, 12, 13))
    ghosts = _dataset(base / "ghosts", (20, 21), scenario="ghost_road")
    pre = pretrain(_pretrain_cfg(train, base / "pre", steps=4))
    yield {"train": train, "test": test, "ghosts": ghosts, "pretrained": pre, "base": base}
    torch.set_num_threads(before)


def _pretrain_cfg(data: Path, out: Path, **changes) -> PretrainConfig:
    base = dict(data=data, out=out, perception=MODEL, steps=4, batch_size=3, checkpoint_every=2, progress=False)
    base.update(changes)
    return PretrainConfig(**base, **ITEMS)


def _finetune_cfg(data: Path, out: Path, **changes) -> FinetuneConfig:
    base = dict(data=data, out=out, perception=MODEL, steps=3, batch_size=3, checkpoint_every=2, progress=False)
    base.update(changes)
    return FinetuneConfig(**base, **ITEMS)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_checkpoint(path).tensors.items() if k.startswith("detector.")}


def test_pretrain_runs_and_checkpoints(data):
    out = data["pretrained"].parent
    assert data["pretrained"].name == FINAL_NAME
    assert sorted(p.name for p in out.glob("step-*")) == ["step-000002.safetensors", "step-000004.safetensors"]
    ckpt = load_checkpoint(out / "step-000004.safetensors")
    meta = ckpt.meta
    assert ckpt.trained_by == "pretrain" and meta["step"] == 4
    assert meta["epoch"] == 1 and meta["epoch_position"] == 4  # 12 frames seen of 8
    assert set(meta["losses"]) == {"synthesis", "contrastive", "next_frame", "total"}
    assert all(torch.isfinite(torch.tensor(v)) for v in meta["losses"].values())
    assert Perception.load(data["pretrained"]).cfg == MODEL


def test_batches_cover_each_epoch_once_and_partners_share_the_episode():
    pool = torch.arange(10, 20)
    first_epoch = torch.cat([batch_index(pool, step, 5, seed=0) for step in range(2)])
    assert sorted(first_epoch.tolist()) == list(range(10, 20))
    assert torch.equal(batch_index(pool, 1, 5, seed=0), batch_index(pool, 1, 5, seed=0))
    episode = torch.tensor([0, 0, 0, 1, 2, 2])
    assert temporal_partner(episode).tolist() == [1, 2, 1, 3, 5, 4]


def test_finetune_from_scratch_and_from_pretrain(data):
    base = data["base"]
    scratch = finetune(_finetune_cfg(data["train"], base / "ft-scratch", label_fraction=0.5))
    init = finetune(_finetune_cfg(data["train"], base / "ft-init", label_fraction=0.5, init=data["pretrained"]))
    a, b = _weights(scratch), _weights(init)
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], b[k]) for k in a)  # the pretrained start made a difference
    assert Perception.load(init).cfg == MODEL
    assert load_checkpoint(base / "ft-init" / "step-000002.safetensors").trained_by == "finetune"
    with pytest.raises(ConfigError, match="label_fraction"):
        _finetune_cfg(data["train"], base / "x", label_fraction=0.0)


def test_killed_job_resumes_to_identical_weights(data):
    base = data["base"]
    through = pretrain(_pretrain_cfg(data["train"], base / "through", steps=6))
    killed_out = base / "killed"
    stopped = pretrain(_pretrain_cfg(data["train"], killed_out, steps=6, stop_at=4))
    assert stopped.name == "step-000004.safetensors" and not (killed_out / FINAL_NAME).exists()
    with pytest.raises(ValueError, match="--resume"):
        pretrain(_pretrain_cfg(data["train"], killed_out, steps=6))
    resumed = pretrain(_pretrain_cfg(data["train"], killed_out, steps=6, resume=True))
    a, b = _weights(through), _weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="batch_size"):
        pretrain(_pretrain_cfg(data["train"], killed_out, steps=6, batch_size=2, resume=True))


def test_workers_reading_ahead_train_to_the_same_weights(data):
    """Batches read ahead in worker processes are the ones the loop would read: the same training."""
    base = data["base"]
    ahead = pretrain(_pretrain_cfg(data["train"], base / "pre-workers", steps=4, workers=2))
    a, b = _weights(data["pretrained"]), _weights(ahead)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    tuned = finetune(_finetune_cfg(data["train"], base / "ft-workers", label_fraction=0.5, workers=1))
    plain = finetune(_finetune_cfg(data["train"], base / "ft-plain", label_fraction=0.5))
    a, b = _weights(plain), _weights(tuned)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="workers"):
        _pretrain_cfg(data["train"], base / "x", workers=-1)


def test_resume_from_a_corrupted_checkpoint_is_a_clear_error(data):
    out = data["base"] / "corrupt"
    pretrain(_pretrain_cfg(data["train"], out, steps=4, stop_at=2))
    latest = latest_checkpoint(out)
    latest.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupted"):
        pretrain(_pretrain_cfg(data["train"], out, steps=4, resume=True))


def test_evaluate_writes_report_and_calibrated_checkpoint(data):
    out = data["base"] / "eval"
    report = evaluate(EvaluateConfig(checkpoint=data["pretrained"], data=data["test"], out=out, batch_size=4, **ITEMS))
    temperature = report["calibration"]["temperature"]
    assert temperature > 0
    saved = json.loads((out / REPORT_NAME).read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert saved["frames"] == {"val": 8, "test": 8}
    assert set(saved["metrics"]) >= {"mAP", "ap", "calibration", "position", "false_positives"}
    calibrated = Perception.load(out / CALIBRATED_NAME)
    assert calibrated.cfg.temperature == pytest.approx(temperature)
    assert calibrated.cfg.position_cov_scale == pytest.approx(report["calibration"]["position_cov_scale"])
    assert report["calibration"]["position_cov_scale_fitted_on"] > 0
    source = Perception.load(data["pretrained"]).cfg  # untouched
    assert source.temperature == 1.0 and source.position_cov_scale == 1.0


def test_evaluate_reports_the_response_to_sensor_ghosts(data):
    # An empty road has no real objects: a temperature fitted there would drive every existence to 0,
    # so the checkpoint's own temperature is kept and every frame is measured.
    cfg = EvaluateConfig(checkpoint=data["pretrained"], data=data["ghosts"], out=data["base"] / "eval-g", **ITEMS)
    report = evaluate(replace(cfg, fit_temperature=False))
    assert report["frames"] == {"val": 0, "test": 8} and report["calibration"]["temperature"] == 1.0
    ghosts, fp = report["metrics"]["ghosts"], report["metrics"]["false_positives"]
    assert ghosts["num_ghosts"] > 0 and ghosts["num_responding_slots"] > 0
    assert 0 < ghosts["mean_existence_of_responding_slots"] < 1
    assert 0 < ghosts["peak_existence_per_ghost"] < 1
    assert fp["expected_per_frame"] > 0  # an empty road: every slot is a false positive
    assert "sensor ghosts" in format_report(report) and "n/a" not in format_report(report).split("sensor ghosts")[1]


def test_logs_recorded_without_ghosts_evaluate_without_ghost_stats(data, tmp_path: Path):
    old = tmp_path / "old"
    for path in sorted(data["test"].glob("*.mcap")):  # as recorded before the sensor's ghosts were
        meta = drive_metadata(path)
        with DriveLogWriter(old / path.name, meta["drive"], meta) as log:
            for record in read_drive(path):
                if record.topic != GHOSTS_TOPIC:
                    log.write(record.topic, record.time_s, record.tensors)
    report = evaluate(EvaluateConfig(checkpoint=data["pretrained"], data=old, out=tmp_path / "eval", **ITEMS))
    assert report["metrics"]["ghosts"] is None
    assert json.loads((tmp_path / "eval" / REPORT_NAME).read_text())["metrics"]["ghosts"] is None
    assert report["metrics"]["num_frames"] == 8
    assert format_report(report).split("sensor ghosts")[1].count("n/a") == 4


def test_cli_help_lists_the_jobs(capsys):
    with pytest.raises(SystemExit):
        drivestack(["perception", "--help"])
    text = capsys.readouterr().out
    assert all(job in text for job in ("pretrain", "finetune", "evaluate"))


def test_cli_errors_are_one_line(data, capsys, tmp_path: Path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    assert drivestack(["perception", "evaluate", "--checkpoint", str(bad), "--data", str(data["test"])]) == 2
    err = capsys.readouterr().err.strip()
    assert "corrupted" in err and len(err.splitlines()) == 1
    assert drivestack(["perception", "pretrain", "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "log folder" in err and "not found" in err
    (tmp_path / "empty").mkdir()
    assert drivestack(["perception", "pretrain", "--data", str(tmp_path / "empty")]) == 2
    assert "no readable drive log (record some with `drivestack fleet record" in capsys.readouterr().err


def test_cli_finetune_reads_the_raster_from_the_logs(data, capsys):
    out = data["base"] / "cli-ft"
    args = ["perception", "finetune", "--data", str(data["train"]), "--out", str(out), "--detector", "tiny",
            "--every", "3", "--max-objects", "16"]  # fmt: skip
    assert drivestack([*args, "--steps", "2", "--batch-size", "2", "--no-progress"]) == 0
    assert Perception.load(out / FINAL_NAME).cfg.detector.raster == RASTER


def test_resume_accepts_a_checkpoint_written_before_a_config_field_was_added(tmp_path, data):
    """A job checkpointed by an older version (its perception config lacks a newer field,
    here `argmax`) resumes: the missing field takes its default."""
    from safetensors import safe_open

    cfg = _finetune_cfg(data["train"], tmp_path / "ft", steps=4, stop_at=2)
    finetune(cfg)
    path = sorted((tmp_path / "ft").glob("step-*.safetensors"))[-1]
    with safe_open(str(path), framework="pt") as f:
        header = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    meta = json.loads(header["meta"])
    del meta["job"]["perception"]["argmax"]
    header["meta"] = json.dumps(meta)
    save_file(tensors, str(path), metadata=header)
    finetune(replace(cfg, stop_at=None, resume=True))
    assert (tmp_path / "ft" / "final.safetensors").is_file()
