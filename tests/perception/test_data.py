"""Simulator datasets: a tiny generated dataset round-trips, splits by episode, fails loudly when corrupted."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from core.config import ConfigError
from perception.data import (
    GHOST_SLOTS,
    GHOSTS,
    INDEX_NAME,
    DatasetConfig,
    DatasetError,
    FrameDataset,
    generate_dataset,
    ghosts_of,
    labeled_mask,
    labels_of,
    pad_objects,
    split_by_episode,
)
from perception.frames import detector_input, initial_stack
from perception.losses import make_targets
from sim.scenarios import build_batch, load_scenario, scenario_path
from sim.sensors import detect_objects, ground_truth, render_frame

# 1 s of cruising = 10 sim steps; every 4th step recorded: steps 0, 4, 8 of 2 episodes.
CFG = DatasetConfig(suite="cruising", seeds=(3, 4), duration=1.0, record_every=4, max_objects=16, episodes_per_shard=1)


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: OpenMP threads only contend
    root = tmp_path_factory.mktemp("frames")
    generate_dataset(CFG, root)
    torch.set_num_threads(before)
    return root


def _scenario(name: str = "cruising"):
    return load_scenario(scenario_path(name)).with_overrides({"duration": 1.0})


@pytest.fixture(scope="module")
def ghost_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ghost-frames")
    generate_dataset(CFG, root, scenarios=[_scenario("ghost_road")])
    torch.set_num_threads(before)
    return root


def strip_ghosts(shard: Path) -> None:
    """Rewrite a shard as one written before the sensor's ghosts were recorded."""
    tensors = load_file(str(shard))
    save_file({k: v for k, v in tensors.items() if not k.startswith(f"{GHOSTS}.")}, str(shard))


def test_round_trip_holds_the_recorded_frames(dataset_root: Path):
    data = FrameDataset(dataset_root)
    assert len(data) == 6
    assert sorted(p.name for p in dataset_root.iterdir()) == [
        INDEX_NAME,
        "shard-00000.safetensors",
        "shard-00001.safetensors",
    ]
    index = json.loads((dataset_root / INDEX_NAME).read_text())
    assert [e["seed"] for e in index["episodes"]] == [3, 4] and index["frames"] == 6
    assert data.episode.tolist() == [0, 0, 0, 1, 1, 1]
    item = data[3]  # episode 1 (seed 4), step 0
    H = CFG.raster.size
    assert item["input"].shape == (2 * CFG.frames + 3, H, H) and item["input"].dtype == torch.float32
    assert item["next_bev"].shape == (2, H, H)
    assert item["step"] == 0 and item["episode"] == 1
    # Step 0 rebuilt independently: the stored input is the FrameStack's, to float16 precision.
    state = build_batch(_scenario(), [4])
    frame = render_frame(state, CFG.raster)
    expected = detector_input(initial_stack(frame, CFG.frames), CFG.raster, CFG.warp_mode)[0]
    torch.testing.assert_close(item["input"], expected, atol=2e-3, rtol=1e-3)
    truth = ground_truth(state, CFG.raster)
    stored = labels_of({k: v.unsqueeze(0) for k, v in item.items()}).validate()
    assert int(stored.valid.sum()) == min(int(truth.valid.sum()), CFG.max_objects)
    assert int((stored.valid & stored.visible).sum()) == int((truth.valid & truth.visible).sum())
    # The next frame is one sim step later and the ego moved.
    assert not torch.equal(item["next_pose"], item["pose"])
    torch.testing.assert_close(data[4]["time"], torch.tensor(0.4))


def test_frames_store_the_sensors_ghosts_of_that_frame(ghost_root: Path):
    data = FrameDataset(ghost_root)
    assert data.has_ghosts
    batch = next(iter(DataLoader(data, batch_size=len(data), shuffle=False)))
    ghosts = ghosts_of(batch).validate()
    assert ghosts.valid.shape == (len(data), GHOST_SLOTS)
    assert (ghosts.agent_id[ghosts.valid] == -1).all() and int(ghosts.valid.sum()) > 0
    # Step 0 of seed 4 rebuilt independently: the same ghosts as the object sensor reports.
    sensed = detect_objects(build_batch(_scenario("ghost_road"), [4]), CFG.raster)
    expected = sensed.xy[sensed.valid & (sensed.agent_id == -1)]  # (K, 2)
    stored = ghosts.xy[3][ghosts.valid[3]]  # frame 3: episode 1 (seed 4), step 0
    assert len(expected) > 0
    torch.testing.assert_close(stored.sort(dim=0).values, expected.float().sort(dim=0).values)


def test_dataset_without_ghosts_still_loads(ghost_root: Path, tmp_path: Path):
    copy = tmp_path / "old"
    shutil.copytree(ghost_root, copy)
    strip_ghosts(copy / "shard-00000.safetensors")
    with pytest.raises(DatasetError, match="some shards record the sensor's ghosts"):
        FrameDataset(copy)
    strip_ghosts(copy / "shard-00001.safetensors")
    old = FrameDataset(copy)
    assert not old.has_ghosts and len(old) == 6
    item = old[0]
    assert ghosts_of(item) is None and labels_of({k: v[None] for k, v in item.items()}).valid.shape == (1, 16)
    torch.testing.assert_close(item["input"], FrameDataset(ghost_root)[0]["input"])


def test_batches_feed_the_loss_targets(dataset_root: Path):
    data = FrameDataset(dataset_root)
    data.check_compatible(CFG.frames, CFG.raster, CFG.warp_mode)
    batch = next(iter(DataLoader(data, batch_size=4, shuffle=False)))
    labels = labels_of(batch).validate()
    assert labels.valid.shape == (4, CFG.max_objects)
    targets = make_targets(labels, CFG.raster, 4).validate()
    assert targets.mask.any()
    with pytest.raises(DatasetError, match="frames, raster, warp_mode"):
        data.check_compatible(CFG.frames + 1, CFG.raster, CFG.warp_mode)


def test_split_is_by_episode(dataset_root: Path):
    data = FrameDataset(dataset_root)
    train, val = split_by_episode(data, val_fraction=0.5, seed=0)
    assert len(train) == 3 and len(val) == 3
    assert set(data.episode[train].tolist()).isdisjoint(data.episode[val].tolist())


def test_truncated_or_missing_shard_is_named(dataset_root: Path, tmp_path: Path):
    copy = tmp_path / "copy"
    shutil.copytree(dataset_root, copy)
    shard = copy / "shard-00001.safetensors"
    with shard.open("r+b") as f:
        f.truncate(shard.stat().st_size // 2)
    with pytest.raises(DatasetError, match="shard-00001.safetensors: corrupted shard"):
        FrameDataset(copy)
    shard.unlink()
    with pytest.raises(DatasetError, match="shard-00001.safetensors: missing shard"):
        FrameDataset(copy)
    (copy / INDEX_NAME).write_text("{not json")
    with pytest.raises(DatasetError, match="index.json: corrupted dataset index"):
        FrameDataset(copy)


def test_pad_objects_keeps_visible_objects_nearest_first():
    truth = ground_truth(build_batch(_scenario(), [3]), CFG.raster)
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


def test_dataset_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="DatasetConfig.seeds"):
        DatasetConfig(seeds=(1, 1))
    with pytest.raises(ConfigError, match="DatasetConfig.record_every"):
        DatasetConfig(record_every=0)
