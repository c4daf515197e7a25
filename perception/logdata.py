"""Detector training and evaluation data read from drive logs (`sim.drivelogs`), the perception jobs' only data.

`LogFrameDataset` serves frames for self-supervised pretraining ("input",
"next_bev", "pose", "next_pose", "episode", "step", "time"), and with their
labels and the sensor's ghosts for the supervised stage and the evaluation.
The detector input of frame t is built from frames t-K+1 .. t of
the same drive only (the first frame repeated at the start, as the stack's
frame stack does): an input never sees its own future, and "next_bev" (frame
t+1) is the training target only. Items are drive-major and time-ordered, so a
frame's neighbour in the index is its neighbour in time.

An item reads only its own frames (t-K+1 .. t+1) through the MCAP chunk index
(`sim.drivelogs.index.read_span`), not the whole drive: training draws items at random
from every drive, so a cache of decoded drives would be decoded again for
almost every item once a folder holds more drives than the cache (measured:
pretraining on the 48 drives of the hard suite ran at 1 frame/s with a
4-drive cache, against 5.4 on 4 drives). Decoded frames are kept in a small
LRU cache (`CACHED_FRAMES`): pretraining reads each item's temporal partner,
which shares all but one of its frames.

With `labels=True` (the supervised perception stage) each item also carries
the frame's ground-truth objects as "labels.<field>" (`perception.data.labels_of`),
read from the `/agents/labels` channel and padded to `max_objects` slots
(`sim.sensors.objects.pad_objects`); with `ghosts=True` (evaluation) the object
sensor's ghosts drawn into the frame, "ghosts.<field>" in G slots
(`perception.data.ghosts_of`), from `/sensor/ghosts`.

`every` keeps one frame in `every` (steps 0, every, 2 every, ...; frames of one
drive 0.1 s apart are near duplicates), and `stored_half` rounds "input" and
"next_bev" through float16, the precision the perception datasets stored them
in: with both, the items are those the perception jobs were trained on.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from perception.data import GHOSTS, LABELS
from perception.frames import FrameStack, detector_input
from sim.config import RasterConfig
from sim.drivelogs.format import FRAME_TOPIC, GHOSTS_TOPIC, LABELS_TOPIC, LogError, LogRecord
from sim.drivelogs.index import DriveEntry, LogIndex, read_span, require_raster
from sim.sensors.objects import pad_ghosts, pad_objects
from sim.types import ObjectList

CACHED_FRAMES = 256  # decoded frames kept (about 330 kB each at 128 x 128 cells: 85 MB)


class LogFrameDataset(Dataset):
    """Every `every`-th frame of `drives` that has a next frame; see the module docstring. Item i is a dict:
    "input" [2K + 3, H, W] (the detector input, `perception.frames.detector_input`), "next_bev" [2, H, W] (the
    next frame's raw BEV, in its own ego frame), "pose" and "next_pose" [3] (world x, y, yaw of the ego
    centre), "episode" (the drive's place in `drives`), "step" (the frame's), "time" (s), and the labels and
    ghosts when asked for."""

    def __init__(
        self,
        index: LogIndex,
        drives: Sequence[DriveEntry],
        frames: int,
        raster: RasterConfig,
        warp_mode: str,
        labels: bool = False,
        max_objects: int = 64,
        every: int = 1,
        stored_half: bool = False,
        ghosts: bool = False,
    ):
        if not drives:
            raise ValueError("LogFrameDataset: no drives (is the log folder empty, or every drive in the other split?)")
        if not (isinstance(every, int) and every >= 1):
            raise ValueError(f"LogFrameDataset.every: expected an int >= 1, got {every!r}")
        self.index, self.drives = index, list(drives)
        require_raster(index, self.drives, raster)
        self.frames, self.raster, self.warp_mode = frames, raster, warp_mode
        self.labels, self.max_objects, self.has_ghosts = labels, max_objects, ghosts
        self.stored_half = stored_half
        self.topics = (FRAME_TOPIC, *((LABELS_TOPIC,) if labels else ()), *((GHOSTS_TOPIC,) if ghosts else ()))
        self.items = [(d, t) for d, entry in enumerate(self.drives) for t in range(0, entry.frames - 1, every)]
        self.episode = torch.tensor([d for d, _ in self.items], dtype=torch.long)
        self._cache: OrderedDict[tuple[int, int], dict[str, Tensor]] = OrderedDict()  # (drive, frame) -> tensors
        # Per drive, frame index by logged time: built once, not on every read.
        self._frame_of = [{time: f for f, time in enumerate(entry.frame_times)} for entry in self.drives]

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict:
        """What a worker process receives (`perception.jobs.loader`): everything but the frame cache."""
        return {**self.__dict__, "_cache": OrderedDict()}

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        drive, t = self.items[i]
        first = max(0, t - self.frames + 1)
        rows = self._read(drive, first, t + 1)  # frames first .. t + 1; row r is frame first + r
        now, after = rows[t - first], rows[t + 1 - first]
        past = [rows[max(0, s) - first] for s in range(t - self.frames + 1, t + 1)]  # the first frame repeats
        stack = FrameStack(
            bev=torch.stack([row["bev"] for row in past])[None],
            pose=torch.stack([row["pose"] for row in past])[None],
            map=now["map"][None],
        )
        item = {
            "input": detector_input(stack, self.raster, self.warp_mode)[0],
            "next_bev": after["bev"],
            "pose": now["pose"].float(),
            "next_pose": after["pose"].float(),
            "episode": torch.tensor(drive),
            "step": torch.tensor(t),
            "time": now["time"].float(),
        }
        if self.stored_half:
            item.update(input=item["input"].half().float(), next_bev=item["next_bev"].half().float())
        prefixes = (*((f"{LABELS}.",) if self.labels else ()), *((f"{GHOSTS}.",) if self.has_ghosts else ()))
        item.update({name: value for name, value in now.items() if name.startswith(prefixes)})
        return item

    def _read(self, d: int, first: int, last: int) -> list[dict[str, Tensor]]:
        """Frames `first` .. `last` of drive d, each a dict (bev [2, H, W], map [3, H, W], pose [3], time [],
        and the labels [M, ...] when asked for), from the cache, decoding from the log the frames it lacks
        and the others of the chunks they are in (the next item often needs them)."""
        missing = [f for f in range(first, last + 1) if (d, f) not in self._cache]
        if missing:
            for f, frame in self._decode(d, missing[0], missing[-1]).items():
                self._cache[(d, f)] = frame
                self._cache.move_to_end((d, f))
        rows = []
        for f in range(first, last + 1):
            self._cache.move_to_end((d, f))
            rows.append(self._cache[(d, f)])
        while len(self._cache) > CACHED_FRAMES:
            self._cache.popitem(last=False)
        return rows

    def _decode(self, d: int, first: int, last: int) -> dict[int, dict[str, Tensor]]:
        """Frames `first` .. `last` of drive d read from its log, with the other frames of their chunks, as
        dicts of tensors by frame index."""
        entry = self.drives[d]
        path = self.index.path(entry)
        topics = self.topics
        records = read_span(path, entry.frame_times[first], entry.frame_times[last], topics, whole_chunks=True)
        frame_of = self._frame_of[d]
        by_frame: dict[int, dict[str, LogRecord]] = {}
        for record in records:
            if record.time_s in frame_of:
                by_frame.setdefault(frame_of[record.time_s], {})[record.topic] = record
        for f in range(first, last + 1):
            lacking = [topic for topic in topics if topic not in by_frame.get(f, {})]
            if lacking:
                raise LogError(f"drive log {path}: no message on {lacking[0]} for frame {f} (t = "
                               f"{entry.frame_times[f]} s; recorded before this channel existed?)")  # fmt: skip
        return {f: self._frame(path, found) for f, found in by_frame.items() if len(found) == len(topics)}

    def _frame(self, path: Path, records: dict[str, LogRecord]) -> dict[str, Tensor]:
        """One frame's tensors from its records (checked against their contracts when this file version was
        indexed, `sim.drivelogs.index`)."""
        sensor = records[FRAME_TOPIC].contract(validate=False)
        if tuple(sensor.bev.shape[-2:]) != (self.raster.size, self.raster.size):
            raise LogError(f"drive log {path}: frames of {tuple(sensor.bev.shape[-2:])} cells, the detector "
                           f"reads {self.raster.size}")  # fmt: skip
        frame = {"bev": sensor.bev[0], "map": sensor.map[0], "pose": sensor.ego_pose[0], "time": sensor.time[0]}
        if self.labels:
            frame.update(self._labels(records[LABELS_TOPIC].contract(validate=False)))
        if self.has_ghosts:  # the reported ghosts only were recorded: back in G slots
            ghosts = pad_ghosts(records[GHOSTS_TOPIC].contract(validate=False)).to_flat(GHOSTS)
            frame.update({name: value[0] for name, value in ghosts.items()})
        return frame

    def _labels(self, labels: ObjectList) -> dict[str, Tensor]:
        """One frame's labels padded to `max_objects` slots, as "labels.<field>" [M, ...]."""
        padded = pad_objects(labels, self.max_objects)[0].to_flat(LABELS)
        return {name: padded[name][0] for name in ObjectList.flat_names(LABELS)}

    def check_compatible(self, frames: int, raster: RasterConfig, warp_mode: str) -> None:
        """Every setting is the detector's own (this dataset builds the inputs for it)."""
        if (frames, raster, warp_mode) != (self.frames, self.raster, self.warp_mode):
            raise ValueError(f"LogFrameDataset built for {(self.frames, self.raster, self.warp_mode)}, "
                             f"asked for {(frames, raster, warp_mode)}")  # fmt: skip
