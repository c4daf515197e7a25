"""`fleet cycle`: record, retrain, gate, promote, at the smallest scale; an unfinished cycle is run again."""

from __future__ import annotations

import json

import pytest
import torch

from core.config import ConfigError
from fleet.cycle import CYCLE_FILE, RECORD_SEEDS, CycleConfig, next_cycle, run_cycle
from fleet.registry import GateSettings, Registry
from perception.model import PerceptionConfig
from sim.config import RasterConfig
from sim.scenarios import scenario_path
from stack.config import StackConfig
from stack.model import Stack

RASTER = RasterConfig(size=32, resolution=1.0)


@pytest.fixture()
def short_scenario(tmp_path):
    """cut_in shortened to 6 s: one warm-up of 4 frames plus the 4.8 s horizon fit in a drive."""
    text = scenario_path("cut_in").read_text().replace("duration: 12.0", "duration: 6.0")
    path = tmp_path / "cut_in_short.yaml"
    path.write_text(text)
    return path


def test_a_cycle_logs_new_drives_trains_from_the_current_model_and_gates_it(tmp_path, short_scenario):
    torch.manual_seed(0)
    initial = Stack(StackConfig.tiny(perception=PerceptionConfig.tiny(RASTER))).save(tmp_path / "v0.safetensors")
    gate = GateSettings(suite=str(short_scenario), seeds=1, export=False)
    cfg = CycleConfig(registry=tmp_path / "models", work=tmp_path / "cycles", suite=str(short_scenario), drives=2,
                      initial=initial, steps=2, batch_size=2, warmup_frames=4, val_fraction=0.0, gate=gate)  # fmt: skip
    report = run_cycle(cfg)
    registry = Registry(tmp_path / "models")
    assert (report["cycle"], report["trained_from"], report["candidate"]) == (1, 1, 2)
    assert report["status"] in ("promoted", "rejected")
    assert registry.current == (2 if report["status"] == "promoted" else 1)
    assert registry.get(1).status == "promoted" and registry.get(2).status == report["status"]
    folder = tmp_path / "cycles" / "cycle-001"
    assert sorted(p.name for p in (folder / "logs").glob("*.mcap")) == [
        f"cut_in-{RECORD_SEEDS + 100:06d}.mcap", f"cut_in-{RECORD_SEEDS + 101:06d}.mcap"]  # fmt: skip
    trained_on = {d["drive"] for d in registry.get(2).logs["train"]}
    assert trained_on == {f"cut_in-{RECORD_SEEDS + 100:06d}", f"cut_in-{RECORD_SEEDS + 101:06d}"}
    assert json.loads((folder / CYCLE_FILE).read_text())["candidate"] == 2
    assert report["held_out_loss"] is None  # every drive trained on (val_fraction 0)
    assert next_cycle(tmp_path / "cycles") == 2


def test_an_unfinished_cycle_is_run_again(tmp_path):
    for n in (1, 2, 3):
        (tmp_path / f"cycle-{n:03d}").mkdir()
    (tmp_path / "cycle-001" / CYCLE_FILE).write_text("{}")
    (tmp_path / "cycle-003" / CYCLE_FILE).write_text("{}")
    assert next_cycle(tmp_path) == 2
    (tmp_path / "cycle-002" / CYCLE_FILE).write_text("{}")
    assert next_cycle(tmp_path) == 4
    assert next_cycle(tmp_path / "none") == 1


def test_bad_cycle_settings_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="drives"):
        CycleConfig(registry=tmp_path, work=tmp_path, drives=0)
    with pytest.raises(ConfigError, match="val_fraction"):
        CycleConfig(registry=tmp_path, work=tmp_path, val_fraction=1.0)
