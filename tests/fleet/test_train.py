"""Retraining from drive logs: inputs built from the past only, and the pretrain stage end to end."""

from __future__ import annotations

import json

import pytest
import torch

from perception.frames import detector_input, initial_stack, push
from perception.logdata import LogFrameDataset
from sim.config import RasterConfig
from sim.drivelogs.format import read_drive
from sim.drivelogs.index import build_index
from sim.drivelogs.recorder import record_drives
from sim.policies import make_policy
from sim.scenarios import load_scenario, scenario_path
from sim.types import SensorFrame
from stack.cli import main


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    out = tmp_path_factory.mktemp("train-logs")
    scenario = load_scenario(scenario_path("cut_in")).with_overrides({"duration": 1.0})
    record_drives(scenario, [0, 1, 2, 3], make_policy("pdm-gt"), out)
    return out


def test_each_input_is_the_runtime_frame_stack_of_the_past_frames(logs):
    """Item t's detector input equals what the stack's own frame stack holds after frames 0..t (so it
    reads no frame after t); frame t + 1 appears only as the target."""
    index = build_index(logs)
    raster = RasterConfig()
    dataset = LogFrameDataset(index, index.drives[:1], 3, raster, "bilinear")
    frames = [r.contract() for r in read_drive(index.path(index.drives[0]), {"/sensor/frame"})]
    assert len(dataset) == len(frames) - 1
    stack = initial_stack(frames[0], 3)
    for t, frame in enumerate(frames[:-1]):
        stack = push(stack, frame) if t else stack
        item = dataset[t]
        torch.testing.assert_close(item["input"], detector_input(stack, raster, "bilinear")[0])
        assert torch.equal(item["next_bev"], frames[t + 1].bev[0]) and int(item["step"]) == t
    assert isinstance(frames[0], SensorFrame)


def test_the_pretrain_stage_trains_from_logs_and_records_what_it_saw(logs, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["fleet", "train", "--stage", "pretrain", "--logs", str(logs), "--out", str(out), "--detector", "tiny",
            "--steps", "2", "--batch-size", "2", "--checkpoint-every", "1", "--val-fraction", "0.5",
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert (out / "final.safetensors").is_file()
    manifest = json.loads((out / "drives.json").read_text())
    train = {d["drive"] for d in manifest["train"]}
    assert train and not train & set(manifest["validation"])
    assert train | set(manifest["validation"]) == {f"cut_in-00000{i}" for i in range(4)}


def test_mixed_precision_on_a_cpu_is_a_clear_config_error():
    from core.config import ConfigError
    from perception.jobs.pretrain import PretrainConfig

    with pytest.raises(ConfigError, match="amp"):
        PretrainConfig(amp=True)


def test_items_read_only_their_own_frames_and_neighbours_reuse_them(logs, monkeypatch):
    import perception.logdata as datasets

    index = build_index(logs)
    spans = []
    real = datasets.read_span

    def counting(path, start_s, end_s, topics, whole_chunks=False):
        spans.append((start_s, end_s))
        return real(path, start_s, end_s, topics, whole_chunks)

    monkeypatch.setattr(datasets, "read_span", counting)
    monkeypatch.setattr(datasets, "CACHED_FRAMES", 4)
    dataset = LogFrameDataset(index, index.drives[:2], 3, RasterConfig(), "bilinear")
    times = index.drives[0].frame_times
    first = dataset[5]
    assert spans == [(times[3], times[6])]  # frames 3..6: the input's past (3, 4, 5) and the target (6)
    torch.testing.assert_close(dataset[5]["input"], first["input"])
    assert len(spans) == 1
    dataset[1]  # frames 0..2, all new: one span of them, the cache keeps its bound
    assert spans[1] == (times[0], times[2]) and len(dataset._cache) == 4
