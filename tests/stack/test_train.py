"""End-to-end fine-tuning: expert drive logs, true futures, the hindsight cost, a short training run."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from core.config import Timing
from perception.model import PerceptionConfig
from sim.config import RasterConfig
from sim.drivelogs.index import build_index
from sim.drivelogs.recorder import record_drives
from sim.policies import make_policy
from sim.scenarios import load_scenario, scenario_path
from stack.config import StackConfig
from stack.episodes import Futures, futures, recorded_drive
from stack.model import Stack
from stack.train import EndToEndConfig, hindsight_collision, train

RASTER = RasterConfig(size=32, resolution=1.0)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """The expert's drives of cut_in (seeds 0 and 1), logged and read back as the job reads them (B = 1 each)."""
    out = tmp_path_factory.mktemp("expert-drives")
    record_drives(load_scenario(scenario_path("cut_in")), [0, 1], make_policy("idm-gt"), out, raster=RASTER,
                  foxglove=False)  # fmt: skip
    index = build_index(out)
    return [recorded_drive(index, entry, Timing()) for entry in index.drives]


def short_cut_in(folder: Path, seconds: float) -> Path:
    """cut_in as a scenario file lasting `seconds` (a suite of its own for `EndToEndConfig.suite`)."""
    path = folder / "cut_in.yaml"
    path.write_text(scenario_path("cut_in").read_text().replace("duration: 12.0", f"duration: {seconds}"))
    return path


def tiny_stack(folder: Path) -> Path:
    torch.manual_seed(0)
    return Stack(StackConfig.tiny(perception=PerceptionConfig.tiny(RASTER))).save(folder / "stack.safetensors")


def straight(speed: float, steps: int = 12, dt: float = 0.4) -> torch.Tensor:
    t = (torch.arange(steps) + 1.0) * dt
    return torch.stack((speed * t, torch.zeros_like(t), torch.zeros_like(t)), dim=-1)  # (T, 3)


def test_hindsight_counts_contact_with_the_true_futures_only():
    # One true car stands 20 m ahead in the ego's lane for the whole horizon.
    truth = Futures(
        ego_xy=torch.zeros(1, 12, 2),
        agent_xy=torch.tensor([20.0, 0.0]).expand(1, 1, 12, 2),
        agent_heading=torch.tensor([1.0, 0.0]).expand(1, 1, 12, 2),
        agent_size=torch.tensor([[[4.5, 1.9]]]),
        agent_valid=torch.ones(1, 1, 12, dtype=torch.bool),
    )
    candidates = torch.stack((straight(10.0), straight(2.0), straight(10.0) + torch.tensor([0.0, 4.0, 0.0])))[None]
    cost = hindsight_collision(candidates, truth)[0]
    assert cost[0] == pytest.approx(1.0, abs=1e-3)  # drives into it
    assert cost[1] < 1e-3 and cost[2] < 1e-3  # stops short; passes in the next lane
    gone = Futures(**{**truth.__dict__, "agent_valid": torch.zeros(1, 1, 12, dtype=torch.bool)})
    assert hindsight_collision(candidates, gone).abs().max() == 0


def test_futures_are_in_the_ego_frame_of_the_step(recorded):
    batch = recorded[1]  # seed 1's drive, its only episode
    t = torch.tensor([10])
    e = torch.tensor([0])
    fut = futures(batch, e, t)
    assert fut.ego_xy.shape == (1, 12, 2) and fut.agent_xy.shape[2:] == (12, 2)
    # The expert drives forward: its future lies ahead (x > 0) and near the lane (|y| small).
    assert (fut.ego_xy[0, :, 0].diff() >= -1e-4).all() and fut.ego_xy[0, -1, 0] > 5.0
    assert fut.ego_xy[0, :, 1].abs().max() < 2.0
    with pytest.raises(ValueError, match="horizon"):
        futures(batch, e, torch.tensor([batch.steps - 3]))


def test_a_short_fine_tuning_changes_detector_and_predictor(recorded, tmp_path: Path):
    torch.manual_seed(0)
    start = Stack(StackConfig.tiny(perception=PerceptionConfig.tiny(RASTER)))
    weights = start.save(tmp_path / "stack.safetensors")
    cfg = EndToEndConfig(
        out=tmp_path / "e2e", weights=weights, suite="cut_in", seeds=(0, 1), expert="idm-gt", steps=3,
        batch_size=2, warmup_frames=8, checkpoint_every=3, progress=False, lr=1e-2,
    )  # fmt: skip
    path = train(cfg, recorded)
    tuned = Stack.load(path)
    assert tuned.cfg == start.cfg
    moved = [not torch.equal(a, b) for a, b in zip(tuned.weights().values(), start.weights().values(), strict=True)]
    names = list(start.weights())
    assert any(m for m, n in zip(moved, names, strict=True) if n.startswith("perception.detector."))
    assert any(m for m, n in zip(moved, names, strict=True) if n.startswith("predictor."))


def test_a_job_on_the_shipped_weights_resumes_whether_or_not_their_path_was_given(recorded, tmp_path, monkeypatch):
    """The job records the file it started from, so a session that names the shipped file and one that takes
    the default (None, found by `core.weights`) are the same job."""
    torch.manual_seed(0)
    stack = Stack(StackConfig.tiny(perception=PerceptionConfig.tiny(RASTER)))
    shipped = stack.save(tmp_path / "w" / "stack.safetensors")
    monkeypatch.setenv("DRIVESTACK_WEIGHTS", str(shipped.parent))
    common = dict(out=tmp_path / "e2e", suite="cut_in", seeds=(0, 1), expert="idm-gt", steps=2, batch_size=2,
                  warmup_frames=8, checkpoint_every=1, progress=False)  # fmt: skip
    assert train(EndToEndConfig(weights=shipped, stop_at=1, **common), recorded).name == "step-000001.safetensors"
    assert train(EndToEndConfig(weights=None, resume=True, **common), recorded).name == "final.safetensors"


def test_a_job_without_logs_records_its_drives_once(tmp_path):
    """The job records the suite into <out>/drives; a resumed session trains on that recording without
    recording again, and a recording of other seeds is refused rather than trained on."""
    common = dict(out=tmp_path / "e2e", weights=tiny_stack(tmp_path), suite=str(short_cut_in(tmp_path, 6.0)),
                  seeds=(0,), expert="idm-gt", steps=2, batch_size=2, warmup_frames=4, checkpoint_every=1,
                  progress=False)  # fmt: skip
    assert train(EndToEndConfig(stop_at=1, **common)).name == "step-000001.safetensors"
    drives = tmp_path / "e2e" / "drives"
    assert [p.name for p in sorted(drives.glob("*.mcap"))] == ["cut_in-000000.mcap"]
    assert (drives / "index.json").is_file()
    written = {p.name: p.stat().st_mtime_ns for p in drives.glob("*.mcap")}
    assert train(EndToEndConfig(resume=True, **common)).name == "final.safetensors"
    assert {p.name: p.stat().st_mtime_ns for p in drives.glob("*.mcap")} == written
    with pytest.raises(ValueError, match=r"drives: not the drives of suite .* seeds \[1\]"):
        train(replace(EndToEndConfig(resume=True, **common), seeds=(1,)))


def test_logs_at_another_raster_than_the_detectors_are_refused(tmp_path, capsys):
    from stack.cli import main

    other = RasterConfig(size=16, resolution=2.0)
    logs = tmp_path / "logs"
    scenario = load_scenario(short_cut_in(tmp_path, 1.0))
    record_drives(scenario, [0], make_policy("idm-gt"), logs, raster=other, foxglove=False)
    weights = tiny_stack(tmp_path)
    cfg = EndToEndConfig(out=tmp_path / "e2e", weights=weights, logs=logs, progress=False)
    with pytest.raises(ValueError, match=rf"logs {re.escape(str(logs))}: recorded at .*size=16.* reads .*size=32"):
        train(cfg)
    args = ["stack", "train", "--weights", str(weights), "--logs", str(logs), "--out", str(tmp_path / "cli")]
    assert main([*args, "--no-progress"]) == 2
    assert f"logs {logs}: recorded at" in capsys.readouterr().err
    assert not (tmp_path / "e2e" / "drives").exists() and not (tmp_path / "cli" / "drives").exists()


@pytest.mark.parametrize(
    "field, value",
    [
        ("seeds", ()),
        ("warmup_frames", 0),
        ("item_stride", 1.5),
        ("imitation_scale", 0.0),
        ("collision_weight", -1.0),
        ("steps", 0),
        ("logs", 3),
    ],  # fmt: skip
)
def test_bad_job_settings_name_the_field(field, value):
    from core.config import ConfigError

    with pytest.raises(ConfigError, match=f"EndToEndConfig.{field}"):
        EndToEndConfig(**{field: value})
