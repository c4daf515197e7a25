"""The labeled perception, prediction and end-to-end stages read the same data from logs as from the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.config import Timing
from perception.data import labels_of
from perception.logdata import LogFrameDataset
from perception.model import PerceptionConfig
from prediction.logwindows import log_windows
from prediction.simdata import TIMING, EpisodeSamples, cut_windows, sample_row
from sim.config import RasterConfig
from sim.drivelogs.format import LogError
from sim.drivelogs.index import build_index
from sim.drivelogs.recorder import record_drives
from sim.geometry import ego_center
from sim.policies import make_policy
from sim.runner import rollout
from sim.scenarios import build_batch, episode_steps, load_scenario, scenario_path
from sim.sensors.lanes import lanes_near
from sim.sensors.pose import SensorPose
from stack.cli import main
from stack.config import StackConfig
from stack.episodes import RecordedBatch, recorded_drive
from stack.model import Stack

RASTER = RasterConfig()  # the expert (pdm-gt) reads the map at the simulator's default raster
SEEDS = [0, 1, 2]


@pytest.fixture(scope="module")
def scenario():
    return load_scenario(scenario_path("cut_in")).with_overrides({"duration": 8.0})  # one prediction window


@pytest.fixture(scope="module")
def logs(scenario, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage-logs")
    record_drives(scenario, SEEDS, make_policy("pdm-gt"), out)
    return out


def test_labeled_frames_carry_the_labels_of_their_own_frame(logs):
    index = build_index(logs)
    dataset = LogFrameDataset(index, index.drives[:1], 3, RASTER, "bilinear", labels=True, max_objects=8)
    unlabeled = LogFrameDataset(index, index.drives[:1], 3, RASTER, "bilinear")
    item, plain = dataset[5], unlabeled[5]
    assert torch.equal(item["input"], plain["input"]) and "labels.xy" not in plain
    labels = labels_of({k: v[None] for k, v in item.items()}).validate()
    assert labels.xy.shape == (1, 8, 2) and bool(labels.valid.any())
    assert torch.equal(labels.agent_id[labels.valid], labels.agent_id[labels.valid].sort().values)


def simulated_samples(scenario, seeds: list[int]) -> EpisodeSamples:
    """The batch's states sampled during the drive itself, every 4th step from step 0 and the final state
    when it falls on one (the simulator's world, not a log)."""
    rows = []

    def sample(state) -> None:
        if int(state.step[0]) % TIMING.sim_steps_per_sample == 0:
            lanes = lanes_near(state.map, SensorPose.of(state.ego))
            rows.append(sample_row(state.ego, state.agents, lanes.points, lanes.valid))

    final, _, _ = rollout(build_batch(scenario, seeds), make_policy("pdm-gt"), episode_steps(scenario),
                          observer=lambda state, obs, plan: sample(state))  # fmt: skip
    sample(final)
    return EpisodeSamples(**{name: torch.stack([r[name] for r in rows], dim=1) for name in rows[0]})


def test_windows_from_logs_equal_the_windows_of_the_simulated_states_bit_for_bit(logs, scenario):
    index = build_index(logs)
    entry = next(d for d in index.drives if d.drive.endswith("000001"))
    from_logs = log_windows(index, [entry])
    simulated = cut_windows(simulated_samples(scenario, SEEDS).index(1)).trimmed()  # the same batch's seed 1
    assert 0 < from_logs.batch_size == simulated.batch_size  # the log holds the final state's sample too
    for name in type(simulated).field_names():
        assert torch.equal(getattr(from_logs, name), getattr(simulated, name)), name
    assert bool(from_logs.lanes_valid.any())


def test_expert_drives_from_logs_equal_the_recorded_episodes(logs, scenario):
    index = build_index(logs)
    entry = next(d for d in index.drives if d.drive.endswith("000002"))
    from_log = recorded_drive(index, entry, Timing())
    # The same episode simulated again, kept in memory by an observer: what the expert saw and the true world.
    names = ("ego_xy", "ego_yaw", "agent_xy", "agent_yaw", "agent_size", "agent_valid")
    frames, truth = [], {name: [] for name in names}

    def observe(state, obs, _plan) -> None:
        frames.append(obs.frame)
        truth["ego_xy"].append(ego_center(state.ego))
        truth["ego_yaw"].append(state.ego.yaw)
        truth["agent_xy"].append(state.agents.xy)
        truth["agent_yaw"].append(state.agents.yaw)
        truth["agent_size"].append(torch.stack((state.agents.length, state.agents.width), dim=-1))
        truth["agent_valid"].append(state.agents.valid)

    rollout(build_batch(scenario, [2]), make_policy("pdm-gt"), episode_steps(scenario, Timing()), raster=RASTER,
            observer=observe)  # fmt: skip
    simulated = RecordedBatch(frames=frames, **{name: torch.stack(values) for name, values in truth.items()})
    assert from_log.steps == simulated.steps == 80
    for name in names:
        torch.testing.assert_close(getattr(from_log, name), getattr(simulated, name), rtol=0, atol=0)
    torch.testing.assert_close(from_log.frames[40].bev, simulated.frames[40].bev, rtol=0, atol=0)


def test_a_drive_without_labels_is_a_clear_error(logs, tmp_path):
    from sim.drivelogs.format import DriveLogWriter, read_drive

    source = build_index(logs).drives[0]
    with DriveLogWriter(tmp_path / "old.mcap", "old", source.metadata) as log:
        for r in read_drive(logs / source.file, {"/sensor/frame"}):
            log.write(r.topic, r.time_s, r.tensors)
    index = build_index(tmp_path)
    with pytest.raises(LogError, match="/agents/labels.*recorded before"):
        LogFrameDataset(index, index.drives, 3, RASTER, "bilinear", labels=True)[0]


def train_args(stage: str, logs: Path, out: Path, *extra: str) -> list[str]:
    loop = ["--steps", "2", "--batch-size", "2", "--checkpoint-every", "1", "--no-progress"]
    return ["fleet", "train", "--stage", stage, "--logs", str(logs), "--out", str(out), "--val-fraction", "0.3",
            *loop, *extra]  # fmt: skip


def saw_only_training_drives(out: Path) -> bool:
    manifest = json.loads((out / "drives.json").read_text())
    train = {d["drive"] for d in manifest["train"]}
    return bool(train) and not train & set(manifest["validation"]) and (out / "final.safetensors").is_file()


def test_the_perception_stage_trains_on_labeled_frames(logs, tmp_path):
    out = tmp_path / "perception"
    assert main(train_args("perception", logs, out, "--detector", "tiny", "--label-fraction", "0.5")) == 0
    assert saw_only_training_drives(out)


def test_the_prediction_stage_trains_on_log_windows(logs, tmp_path):
    out = tmp_path / "prediction"
    assert main(train_args("prediction", logs, out, "--predictor", "tiny")) == 0
    assert saw_only_training_drives(out)


def test_the_end2end_stage_fine_tunes_a_stack_on_the_expert_drives(logs, tmp_path):
    start = tiny_stack(tmp_path)
    out = tmp_path / "e2e"
    args = train_args("end2end", logs, out, "--init", str(start), "--warmup-frames", "4", "--val-fraction", "0.5")
    assert main(args) == 0
    assert saw_only_training_drives(out)
    assert Stack.load(out / "final.safetensors").cfg == Stack.load(start).cfg
    # The held-out drive (cut_in-000001 at 0.5) scores the starting and the trained stack on the job's own loss.
    validation = json.loads((out / "validation.json").read_text())
    assert validation["drives"] == ["cut_in-000001"]
    for stack in ("start", "trained"):
        terms = validation[stack]
        assert terms["items"] > 0 and terms["total"] == pytest.approx(terms["imitation"] + terms["hindsight"])
    assert validation["start"]["total"] != validation["trained"]["total"]


def test_prediction_windows_need_drives_of_one_window(logs, tmp_path, scenario):
    short = scenario.with_overrides({"duration": 2.0})
    record_drives(short, [9], make_policy("pdm-gt"), tmp_path)
    with pytest.raises(LogError, match="long enough"):
        log_windows(build_index(tmp_path), build_index(tmp_path).drives)
    assert TIMING.sim_steps_per_sample == 4


def test_frames_that_are_not_consecutive_sim_steps_are_refused(logs, tmp_path):
    from sim.drivelogs.format import DriveLogWriter, read_drive

    source = build_index(logs).drives[0]
    with DriveLogWriter(tmp_path / "gappy.mcap", "gappy") as log:
        for r in read_drive(logs / source.file):
            if not 0.95 < r.time_s < 1.05:  # frame 10 was dropped
                log.write(r.topic, r.time_s, r.tensors)
    with pytest.raises(LogError, match="gappy.mcap: frames 9 and 10 are 0.2000 s apart"):
        log_windows(build_index(tmp_path), build_index(tmp_path).drives)


def test_a_broken_log_is_reported_and_training_goes_on_with_the_others(logs, tmp_path, capsys):
    import shutil

    folder = tmp_path / "logs"
    shutil.copytree(logs, folder)
    good = sorted(folder.glob("*.mcap"))[0]
    (folder / "truncated.mcap").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    out = tmp_path / "prediction"
    assert main(train_args("prediction", folder, out, "--predictor", "tiny")) == 0
    manifest = json.loads((out / "drives.json").read_text())
    assert "truncated or corrupted at byte" in manifest["broken"]["truncated.mcap"]
    assert len(manifest["train"]) + len(manifest["validation"]) == len(SEEDS)


def test_the_perception_stage_skips_drives_without_labels(logs, tmp_path):
    import shutil

    from sim.drivelogs.format import DriveLogWriter, read_drive

    folder = tmp_path / "logs"
    shutil.copytree(logs, folder)
    source = build_index(logs).drives[0]
    raster = {"raster": source.metadata["raster"]}
    with DriveLogWriter(folder / "old.mcap", "old", raster) as log:  # recorded before the labels channel existed
        for r in read_drive(logs / source.file, {"/sensor/frame"}):
            log.write(r.topic, r.time_s, r.tensors)
    out = tmp_path / "perception"
    assert main(train_args("perception", folder, out, "--val-fraction", "0", "--detector", "tiny")) == 0
    manifest = json.loads((out / "drives.json").read_text())
    assert "/agents/labels" in manifest["broken"]["old.mcap"] and len(manifest["train"]) == len(SEEDS)


@pytest.mark.parametrize("stage", ["prediction", "end2end"])
def test_a_drive_damaged_past_indexing_is_reported_and_the_stage_goes_on(logs, tmp_path, stage):
    import shutil

    from sim.drivelogs.format import DriveLogWriter, read_drive

    folder = tmp_path / "logs"
    shutil.copytree(logs, folder)
    source = build_index(logs).drives[0]
    with DriveLogWriter(folder / "gappy.mcap", "gappy") as log:  # readable MCAP, but frame 10 was dropped
        for r in read_drive(logs / source.file):
            if not 0.95 < r.time_s < 1.05:
                log.write(r.topic, r.time_s, r.tensors)
    out = tmp_path / stage
    extra = (
        ["--predictor", "tiny"]
        if stage == "prediction"
        else ["--init", str(tiny_stack(tmp_path)), "--warmup-frames", "4"]
    )
    assert main(train_args(stage, folder, out, "--val-fraction", "0", *extra)) == 0
    manifest = json.loads((out / "drives.json").read_text())
    assert "frames 9 and 10" in manifest["broken"]["gappy.mcap"]
    assert "gappy" not in {d["drive"] for d in manifest["train"]} and len(manifest["train"]) == len(SEEDS)


def tiny_stack(folder: Path) -> Path:
    torch.manual_seed(0)
    return Stack(StackConfig.tiny(perception=PerceptionConfig.tiny(RASTER))).save(folder / "start.safetensors")
