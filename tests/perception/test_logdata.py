"""Detector items read from drive logs are exactly what the stack's frame stack gave during the drive, split
by episode; the perception data helpers (label padding, labeled subsets)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from perception.data import GHOSTS, LABELS, ghosts_of, labeled_mask, labels_of, split_by_episode
from perception.frames import detector_input, initial_stack, push
from perception.logdata import LogFrameDataset
from perception.losses import make_targets
from sim.config import RasterConfig
from sim.drivelogs.format import GHOSTS_TOPIC, DriveLogWriter, LogError, drive_metadata, read_drive
from sim.drivelogs.index import build_index
from sim.drivelogs.recorder import SuiteOrder, drive_recorder
from sim.policies import make_policy
from sim.runner import rollout
from sim.scenarios import build_batch, episode_steps, load_scenario, scenario_path
from sim.sensors import detect_objects, ground_truth, render_frame
from sim.sensors.objects import pad_ghosts, pad_objects
from sim.sensors.observe import DEFAULT_GHOST_SLOTS

RASTER = RasterConfig()
FRAMES, WARP, EVERY, SLOTS = 3, "bilinear", 4, 16
SEEDS = [3, 4]


def _scenario(name: str):
    return load_scenario(scenario_path(name)).with_overrides({"duration": 1.0})  # 10 steps


class Reference:
    """What the detector saw during the drive: the frame stack pushed every step, as the stack does, and the
    labels and ghosts of every `EVERY`-th step, with the next step's BEV and pose."""

    def __init__(self):
        self.stack, self.step, self.items = None, 0, []

    def observe(self, state, obs, plan) -> None:
        frame = obs.frame
        self.stack = initial_stack(frame, FRAMES) if self.stack is None else push(self.stack, frame)
        self.complete(frame)
        if self.step % EVERY == 0:
            self.items.append({
                "input": detector_input(self.stack, RASTER, WARP).half().float(), "pose": frame.ego_pose.float(),
                "time": frame.time.float(), "step": self.step,
                **pad_objects(ground_truth(state, RASTER), SLOTS)[0].to_flat(LABELS),
                **pad_ghosts(detect_objects(state, RASTER)).to_flat(GHOSTS),
            })  # fmt: skip
        self.step += 1

    def complete(self, frame) -> None:
        if self.items and "next_bev" not in self.items[-1]:
            self.items[-1].update(next_bev=frame.bev.half().float(), next_pose=frame.ego_pose.float())


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> tuple[Path, list[list[dict]], list[torch.Tensor]]:
    """cruising and ghost_road drives (seeds 3, 4 in one batch each, suite hard) and, per drive in the suite's
    order, the reference items and the final state's BEV."""
    out = tmp_path_factory.mktemp("perception-logs")
    policy, references, finals = make_policy("pdm-gt"), [], {}
    for name in ("ghost_road", "cruising"):  # recorded out of the suite's order
        scenario, reference = _scenario(name), Reference()
        recorder = drive_recorder(out, scenario, SEEDS, policy, RASTER, foxglove=False, suite=SuiteOrder.of("hard"))

        def observe(state, obs, plan, reference=reference, recorder=recorder):
            reference.observe(state, obs, plan)
            recorder.observe(state, obs, plan)

        final, _, errors = rollout(build_batch(scenario, SEEDS), policy, episode_steps(scenario), observer=observe)
        recorder.close(final, errors)
        final_frame = render_frame(final, RASTER)
        reference.complete(final_frame)
        references.append((name, reference.items))
        finals[name] = list(final_frame.bev)
    references.sort(key=lambda r: r[0] != "cruising")
    per_drive = [[{k: (v[b] if torch.is_tensor(v) else v) for k, v in item.items()} for item in items]
                 for _, items in references for b in range(len(SEEDS))]  # fmt: skip
    return out, per_drive, [bev for name, _ in references for bev in finals[name]]


def dataset(folder: Path, **options) -> LogFrameDataset:
    index = build_index(folder)
    settings = {"labels": True, "max_objects": SLOTS, "every": EVERY, "stored_half": True, "ghosts": True}
    return LogFrameDataset(index, index.drives, FRAMES, RASTER, WARP, **(settings | options))


def test_items_are_what_the_detector_saw_during_the_drive_bit_for_bit(recorded):
    folder, per_drive, _ = recorded
    data = dataset(folder)
    assert [d.drive for d in data.drives] == ["cruising-000003", "cruising-000004", "ghost_road-000003",
                                              "ghost_road-000004"]  # the suite's order  # fmt: skip
    assert len(data) == 4 * 3 and data.episode.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    for i in range(len(data)):
        item, want = data[i], per_drive[i // 3][i % 3]
        assert int(item["episode"]) == i // 3 and int(item["step"]) == want["step"]
        for name in ("input", "next_bev", "pose", "next_pose", "time", *(k for k in want if k.startswith(LABELS))):
            assert item[name].dtype == want[name].dtype and torch.equal(item[name], want[name]), (i, name)
        # The ghosts: the same reported ghosts in the same order (the log keeps the reported ones only).
        got = ghosts_of({k: v[None] for k, v in item.items()})
        expected = ghosts_of({k: v[None] for k, v in want.items() if torch.is_tensor(v)})
        assert got.valid.shape == (1, DEFAULT_GHOST_SLOTS)
        for name in type(got).field_names():
            assert torch.equal(getattr(got, name)[got.valid], getattr(expected, name)[expected.valid]), (i, name)
    assert sum(int(ghosts_of(data[i]).valid.sum()) for i in range(6, 12)) > 0  # ghost_road's are compared


def test_the_last_step_has_the_final_state_as_its_next_frame(recorded):
    folder, _, final_bevs = recorded
    data = dataset(folder, every=1, labels=False, ghosts=False, stored_half=False)
    assert len(data) == 4 * 10  # every step has a next frame: the final state's after the last
    for drive in range(4):
        last = data[10 * drive + 9]
        assert int(last["step"]) == 9 and last["next_bev"].dtype == torch.float32
        assert torch.equal(last["next_bev"], final_bevs[drive])


def test_batches_feed_the_loss_targets_and_split_by_drive(recorded):
    data = dataset(recorded[0])
    batch = next(iter(DataLoader(data, batch_size=4, shuffle=False)))
    labels = labels_of(batch).validate()
    assert labels.valid.shape == (4, SLOTS) and make_targets(labels, RASTER, 4).validate().mask.any()
    train, val = split_by_episode(data, val_fraction=0.5, seed=0)
    assert len(train) == len(val) == 6
    assert set(data.episode[train].tolist()).isdisjoint(data.episode[val].tolist())


def test_logs_without_ghosts_or_at_another_raster_are_clear_errors(recorded, tmp_path):
    folder = recorded[0]
    source = sorted(folder.glob("*.mcap"))[0]
    meta = drive_metadata(source)
    with DriveLogWriter(tmp_path / source.name, meta["drive"], meta) as log:
        for record in read_drive(source):
            if record.topic != GHOSTS_TOPIC:
                log.write(record.topic, record.time_s, record.tensors)
    with pytest.raises(LogError, match="no message on /sensor/ghosts .*recorded before this channel existed"):
        dataset(tmp_path)[0]
    assert GHOSTS_TOPIC not in build_index(tmp_path).drives[0].topics
    assert ghosts_of(dataset(tmp_path, ghosts=False)[0]) is None
    index = build_index(folder)
    with pytest.raises(LogError, match="the detector reads"):
        LogFrameDataset(index, index.drives, FRAMES, RasterConfig(size=64), WARP)
    with pytest.raises(ValueError, match="every: expected an int >= 1"):
        LogFrameDataset(index, index.drives, FRAMES, RASTER, WARP, every=0)


def test_pad_objects_keeps_visible_objects_nearest_first():
    truth = ground_truth(build_batch(_scenario("cruising"), [3]), RASTER)
    seen = truth.valid & truth.visible
    slots = int(seen.sum()) - 1
    padded, dropped = pad_objects(truth, slots)
    padded.validate()
    assert padded.valid.shape == (1, slots) and (padded.valid & padded.visible).all()
    assert dropped.tolist() == [1]
    farthest = truth.xy[seen].norm(dim=-1).max()
    assert (padded.xy.norm(dim=-1) < farthest).all()
    wide, none_dropped = pad_objects(truth, truth.valid.shape[1] + 5)
    assert int(wide.valid.sum()) == int(truth.valid.sum()) and none_dropped.tolist() == [0]


def test_labeled_mask_chooses_an_exact_count_from_its_seed():
    mask = labeled_mask(100, 0.1, seed=7)
    assert mask.dtype == torch.bool and int(mask.sum()) == 10
    assert torch.equal(mask, labeled_mask(100, 0.1, seed=7))
    assert not torch.equal(mask, labeled_mask(100, 0.1, seed=8))
    assert int(labeled_mask(7, 1.0, seed=0).sum()) == 7 and int(labeled_mask(7, 0.0, seed=0).sum()) == 0
    with pytest.raises(ValueError, match="fraction"):
        labeled_mask(10, 1.5, seed=0)
