"""Detector datasets from the simulator: roll out scenarios, record frames, write shards.

    index = generate_dataset(DatasetConfig(seeds=tuple(range(32))), "data/frames")
    dataset = FrameDataset("data/frames")
    train, val = split_by_episode(dataset, val_fraction=0.1, seed=0)
    labeled = labeled_mask(len(dataset), fraction=0.1, seed=0)

A driving policy drives every scenario of a suite for each seed. The
`FrameStack` is pushed every sim step, exactly as the detector is run, and
every `record_every`-th step records the detector input, the ground-truth
labels (padded to `max_objects` slots), the object sensor's ghosts of that
frame (the false objects drawn into its BEV raster, in G = `Capacity().ghosts`
slots), the next sim step's raw BEV with both poses (for next-frame
prediction), and the episode id and time. Datasets written before ghosts were
recorded still load; their frames have no ghost information (`ghosts_of`
returns None).

One shard per (scenario, chunk of seeds): a safetensors file written to a
temporary name and moved into place (os.replace), then the JSON index the same
way, so a crash never leaves a half-written file under a final name. Splits
are by episode, never by frame: frames of one episode are near duplicates.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import Dataset

from core.config import ConfigError
from core.io import atomic_path, atomic_write_text
from perception.config import WARP_MODES
from perception.frames import FrameStack, detector_input, initial_stack, push
from sim.config import Capacity, RasterConfig
from sim.policies import Observation, PolicyOutput, make_policy
from sim.runner import rollout
from sim.scenarios import Scenario, build_batch, episode_steps, resolve_suite
from sim.sensors import detect_objects, ground_truth, render_frame
from sim.state import WorldState
from sim.types import ObjectList

INDEX_NAME = "index.json"
FORMAT = "drivestack-frames/1"
LABELS = "labels"
GHOSTS = "ghosts"
GHOST_SLOTS = Capacity().ghosts


class DatasetError(ValueError):
    """A dataset file is missing, corrupted or does not match its index."""


@dataclass(frozen=True)
class DatasetConfig:
    """What to simulate and record.

    Attributes:
        suite: suite name, scenario name or .yaml path (`sim.scenarios.resolve_suite`).
        policy: the driving policy (`sim.policies.make_policy`).
        seeds: episode seeds, each run in every scenario.
        duration: overrides every scenario's duration, s (None keeps the files').
        record_every: record one frame every this many sim steps.
        max_objects: M, label slots per frame; when a frame has more objects, the
            visible ones nearest the ego are kept (the count dropped is in the index).
        frames, raster, warp_mode: the detector input (`DetectorConfig` fields).
        episodes_per_shard: seeds simulated as one batch and written as one shard.
    """

    suite: str = "hard"
    policy: str = "pdm-gt"
    seeds: tuple[int, ...] = tuple(range(8))
    duration: float | None = None
    record_every: int = 5
    max_objects: int = 64
    frames: int = 3
    raster: RasterConfig = RasterConfig()
    warp_mode: str = "bilinear"
    episodes_per_shard: int = 8

    def __post_init__(self) -> None:
        def need(cond: bool, name: str, expected: str) -> None:
            if not cond:
                raise ConfigError(f"DatasetConfig.{name}: expected {expected}, got {getattr(self, name)!r}")

        need(len(self.seeds) >= 1 and all(isinstance(s, int) and s >= 0 for s in self.seeds), "seeds", "ints >= 0")
        need(len(set(self.seeds)) == len(self.seeds), "seeds", "distinct seeds")
        need(self.duration is None or self.duration > 0, "duration", "None or > 0 s")
        for name in ("record_every", "max_objects", "frames", "episodes_per_shard"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 1, name, "an int >= 1")
        need(self.warp_mode in WARP_MODES, "warp_mode", f"one of {WARP_MODES}")


def pad_objects(labels: ObjectList, slots: int) -> tuple[ObjectList, Tensor]:
    """Labels in exactly `slots` slots, and [B] how many visible objects did not fit.

    Kept first: valid and visible objects, then valid ones, nearest the ego first.
    """
    B, M = labels.valid.shape
    if slots > M:
        labels = _append_empty(labels, slots - M)
    seen = labels.valid & labels.visible
    priority = seen.double() * 2e6 + labels.valid.double() * 1e6 - labels.xy.double().norm(dim=-1).clamp_max(1e5)
    keep = torch.topk(priority, slots, dim=1).indices.sort(dim=1).values  # (B, slots), slot order kept
    dropped = seen.sum(1) - torch.gather(seen, 1, keep).sum(1)
    return _gather_objects(labels, keep), dropped


def pad_ghosts(sensed: ObjectList, slots: int = GHOST_SLOTS) -> ObjectList:
    """The sensor's ghosts (`agent_id == -1`) of `sensed` in exactly `slots` slots, nearest the ego first
    when there are more; every other slot is marked invalid."""
    is_ghost = sensed.valid & (sensed.agent_id == -1)  # (B, M)
    only_ghosts = replace(sensed, valid=is_ghost, visible=sensed.visible & is_ghost)
    return pad_objects(only_ghosts, slots)[0]


def _append_empty(labels: ObjectList, extra: int) -> ObjectList:
    B = labels.valid.shape[0]
    fill = {"length": 1.0, "width": 1.0, "agent_id": -1}
    fields = {}
    for name in ObjectList.field_names():
        value = getattr(labels, name)
        pad = torch.full((B, extra, *value.shape[2:]), fill.get(name, 0), dtype=value.dtype, device=value.device)
        fields[name] = torch.cat((value, pad), dim=1)
    return ObjectList(**fields)


def _gather_objects(labels: ObjectList, index: Tensor) -> ObjectList:
    fields = {}
    for name in ObjectList.field_names():
        value = getattr(labels, name)
        expanded = index.reshape(*index.shape, *([1] * (value.dim() - 2))).expand(*index.shape, *value.shape[2:])
        fields[name] = torch.gather(value, 1, expanded)
    return ObjectList(**fields)


class _Recorder:
    """Rollout observer: pushes the FrameStack every step and records every k-th step.

    A record's next-frame fields are filled at the following step (or from the
    final state by `finish`), so the input itself only ever sees the past.
    """

    def __init__(self, cfg: DatasetConfig, episodes: Tensor):
        self.cfg, self.episodes = cfg, episodes
        self.stack: FrameStack | None = None
        self.step = 0
        self.records: list[dict[str, Tensor]] = []
        self.dropped = torch.zeros(len(episodes), dtype=torch.long)

    def __call__(self, state: WorldState, obs: Observation, plan: PolicyOutput) -> None:
        frame = obs.frame
        self.stack = initial_stack(frame, self.cfg.frames) if self.stack is None else push(self.stack, frame)
        self._complete(frame.bev, frame.ego_pose)
        if self.step % self.cfg.record_every == 0:
            labels, dropped = pad_objects(ground_truth(state, self.cfg.raster), self.cfg.max_objects)
            self.dropped += dropped.cpu()
            ghosts = pad_ghosts(detect_objects(state, self.cfg.raster))
            record = {
                "input": detector_input(self.stack, self.cfg.raster, self.cfg.warp_mode).half(),
                "pose": frame.ego_pose.float(),
                "episode": self.episodes,
                "time": frame.time.float(),
                "step": torch.full_like(self.episodes, self.step),
                **labels.to_flat(LABELS),
                **ghosts.to_flat(GHOSTS),
            }
            self.records.append({k: v.cpu() for k, v in record.items()})
        self.step += 1

    def _complete(self, bev: Tensor, pose: Tensor) -> None:
        if self.records and "next_bev" not in self.records[-1]:
            self.records[-1]["next_bev"] = bev.half().cpu()
            self.records[-1]["next_pose"] = pose.float().cpu()

    def finish(self, final_frame_bev: Tensor, final_pose: Tensor) -> dict[str, Tensor]:
        """Tensors of the shard, episode-major ([B T, ...]), contiguous."""
        self._complete(final_frame_bev, final_pose)
        out = {}
        for name in self.records[0]:
            stacked = torch.stack([r[name] for r in self.records], dim=1)  # (B, T, ...)
            out[name] = stacked.flatten(0, 1).contiguous()
        return out


def _scenarios(cfg: DatasetConfig, scenarios: Sequence[Scenario] | None) -> list[Scenario]:
    chosen = list(scenarios) if scenarios is not None else resolve_suite(cfg.suite)
    if cfg.duration is not None:
        chosen = [s.with_overrides({"duration": cfg.duration}) for s in chosen]
    return chosen


def _record_shard(scenario: Scenario, seeds: list[int], episodes: Tensor, cfg: DatasetConfig) -> tuple[dict, dict]:
    recorder = _Recorder(cfg, episodes)
    state = build_batch(scenario, seeds)
    final, _, errors = rollout(
        state, make_policy(cfg.policy), episode_steps(scenario), raster=cfg.raster, observer=recorder
    )
    last = render_frame(final, cfg.raster)
    tensors = recorder.finish(last.bev, last.ego_pose)
    meta = {
        "scenario": scenario.name,
        "family": scenario.family,
        "seeds": seeds,
        "episodes": episodes.tolist(),
        "frames": int(tensors["input"].shape[0]),
        "dropped_visible_objects": int(recorder.dropped.sum()),
        "errors": {str(seed): err for seed, err in zip(seeds, errors, strict=True) if err is not None},
    }
    return tensors, meta


def generate_dataset(cfg: DatasetConfig, root: str | Path, scenarios: Sequence[Scenario] | None = None) -> Path:
    """Simulate and write every shard, then the index; returns the index path.

    `scenarios` replaces `cfg.suite` when given (`cfg.duration` still applies).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    shards, episodes, next_episode = [], [], 0
    for scenario in _scenarios(cfg, scenarios):
        for start in range(0, len(cfg.seeds), cfg.episodes_per_shard):
            seeds = list(cfg.seeds[start : start + cfg.episodes_per_shard])
            ids = torch.arange(next_episode, next_episode + len(seeds))
            next_episode += len(seeds)
            tensors, meta = _record_shard(scenario, seeds, ids, cfg)
            meta["file"] = f"shard-{len(shards):05d}.safetensors"
            with atomic_path(root / meta["file"]) as tmp:
                save_file(tensors, str(tmp))
            shards.append(meta)
            episodes += [{"id": int(i), "scenario": scenario.name, "seed": s} for i, s in zip(ids, seeds, strict=True)]
    config = {**asdict(cfg), "seeds": list(cfg.seeds)}
    index = {"format": FORMAT, "config": config, "frames": sum(s["frames"] for s in shards)}
    index.update(shards=shards, episodes=episodes)
    path = root / INDEX_NAME
    atomic_write_text(path, json.dumps(index, indent=1))
    return path


def _shard_names() -> list[str]:
    """Tensors every shard holds (the ghosts, `ObjectList.flat_names(GHOSTS)`, are in newer shards only)."""
    return ["input", "next_bev", "pose", "next_pose", "episode", "time", "step", *ObjectList.flat_names(LABELS)]


def _read_index(root: Path) -> dict:
    path = root / INDEX_NAME
    try:
        index = json.loads(path.read_text())
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the dataset index ({exc.strerror or exc})") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: corrupted dataset index (invalid JSON: {exc})") from exc
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DatasetError(f"{path}: expected a dataset index of format {FORMAT!r}")
    return index


def _ghost_names(names: set[str], path: Path) -> list[str]:
    """The ghost tensors of a shard: all of them, or none in a shard written before ghosts were recorded."""
    ghost_names = ObjectList.flat_names(GHOSTS)
    present = [n for n in ghost_names if n in names]
    if present and len(present) != len(ghost_names):
        raise DatasetError(f"{path}: corrupted shard, missing tensors {sorted(set(ghost_names) - names)}")
    return present


def _check_shard(path: Path, frames: int) -> tuple[Tensor, bool]:
    """Open a shard, check its tensors against the index; returns its [F] episode ids and whether it has ghosts."""
    try:
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
            missing = sorted(set(_shard_names()) - names)
            if missing:
                raise DatasetError(f"{path}: corrupted shard, missing tensors {missing}")
            stored = _shard_names() + _ghost_names(names, path)
            wrong = [n for n in stored if f.get_slice(n).get_shape()[0] != frames]
            if wrong:
                raise DatasetError(f"{path}: corrupted shard, {wrong} do not hold the index's {frames} frames")
            return f.get_tensor("episode"), len(stored) > len(_shard_names())
    except DatasetError:
        raise
    except FileNotFoundError as exc:
        raise DatasetError(f"{path}: missing shard listed in {INDEX_NAME}") from exc
    except Exception as exc:  # safetensors raises its own error type, or OSError
        raise DatasetError(f"{path}: corrupted shard ({exc})") from exc


class FrameDataset(Dataset):
    """Frames of a generated dataset (`generate_dataset`); every shard is checked on open.

    Item i is a dict: "input" [2K + 3, H, W], "next_bev" [2, H, W] (the next sim
    step's raw BEV, in that step's ego frame), "pose" and "next_pose" [3] (world
    x, y, yaw of the ego centre), "episode", "step" (long), "time" (s), and the
    labels as "labels.<field>" (`labels_of` rebuilds an `ObjectList` from a batch),
    and when `has_ghosts` the sensor's ghosts as "ghosts.<field>" (`ghosts_of`).
    Rasters are stored as float16 and returned as float32.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.index = _read_index(self.root)
        cfg = self.index["config"]
        self.frames, self.warp_mode = int(cfg["frames"]), str(cfg["warp_mode"])
        self.raster = RasterConfig(**cfg["raster"])
        self.paths = [self.root / shard["file"] for shard in self.index["shards"]]
        sizes = [int(shard["frames"]) for shard in self.index["shards"]]
        checked = [_check_shard(p, n) for p, n in zip(self.paths, sizes, strict=True)]
        self.episode = torch.cat([episode for episode, _ in checked])  # (F,)
        with_ghosts = {has for _, has in checked}
        if len(with_ghosts) > 1:  # a batch must either have ghosts or not
            raise DatasetError(f"{self.root}: some shards record the sensor's ghosts and some do not")
        self.has_ghosts = with_ghosts == {True}
        self.names = _shard_names() + (ObjectList.flat_names(GHOSTS) if self.has_ghosts else [])
        self.starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.total = sum(sizes)

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        if not -self.total <= i < self.total:
            raise IndexError(f"frame {i} out of range for a dataset of {self.total} frames")
        i %= self.total
        shard = bisect.bisect_right(self.starts, i) - 1
        local, path = i - self.starts[shard], self.paths[shard]
        try:
            with safe_open(str(path), framework="pt") as f:
                item = {name: f.get_slice(name)[local : local + 1][0] for name in self.names}
        except Exception as exc:  # the file changed since it was checked
            raise DatasetError(f"{path}: cannot read frame {local} ({exc})") from exc
        for name in ("input", "next_bev"):
            item[name] = item[name].float()
        return item

    def check_compatible(self, frames: int, raster: RasterConfig, warp_mode: str) -> None:
        """Raise unless the stored inputs were made for this detector input (`DetectorConfig` fields)."""
        want = (self.frames, self.raster, self.warp_mode)
        if (frames, raster, warp_mode) != want:
            raise DatasetError(
                f"{self.root}: inputs were recorded with (frames, raster, warp_mode) = {want}, "
                f"expected {(frames, raster, warp_mode)}"
            )


def labels_of(batch: dict[str, Tensor]) -> ObjectList:
    """The ground-truth `ObjectList` of a (collated) dataset item."""
    return ObjectList.from_flat(batch, LABELS)


def ghosts_of(batch: dict[str, Tensor]) -> ObjectList | None:
    """The object sensor's ghosts (`agent_id == -1`, G slots) of a (collated) dataset item, or None
    for a dataset recorded without them."""
    if not any(name in batch for name in ObjectList.flat_names(GHOSTS)):
        return None
    return ObjectList.from_flat(batch, GHOSTS)


def split_by_episode(dataset: FrameDataset, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Frame indices (train, val) with `round(val_fraction * episodes)` whole episodes in val."""
    if not 0 <= val_fraction <= 1:
        raise ValueError(f"split_by_episode.val_fraction: expected in [0, 1], got {val_fraction!r}")
    episodes = torch.unique(dataset.episode)
    order = torch.randperm(len(episodes), generator=torch.Generator().manual_seed(seed))
    val_episodes = episodes[order[: round(val_fraction * len(episodes))]]
    in_val = torch.isin(dataset.episode, val_episodes)
    return torch.nonzero(~in_val).flatten(), torch.nonzero(in_val).flatten()


def labeled_mask(num_frames: int, fraction: float, seed: int) -> Tensor:
    """[num_frames] bool with exactly `round(fraction * num_frames)` frames labeled, chosen at random.

    Frames, not episodes, are chosen: for the label-efficiency study what
    matters is how many labeled frames the detector sees, and random frames
    spread them over every scenario. (Choosing whole episodes would model a
    fleet labelling whole drives; pass episode-filtered indices for that.)
    """
    if not 0 <= fraction <= 1:
        raise ValueError(f"labeled_mask.fraction: expected in [0, 1], got {fraction!r}")
    if num_frames < 0:
        raise ValueError(f"labeled_mask.num_frames: expected >= 0, got {num_frames!r}")
    chosen = torch.randperm(num_frames, generator=torch.Generator().manual_seed(seed))[: round(fraction * num_frames)]
    mask = torch.zeros(num_frames, dtype=torch.bool)
    mask[chosen] = True
    return mask
