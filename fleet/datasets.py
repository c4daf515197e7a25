"""Training data read from drive logs, per stage.

`LogFrameDataset` serves unlabeled frames for self-supervised pretraining in
the item format of `perception.data.FrameDataset` ("input", "next_bev", "pose",
"next_pose", "episode", "step", "time"), so the perception jobs train on logs
unchanged. The detector input of frame t is built from frames t-K+1 .. t of
the same drive only (the first frame repeated at the start, as the stack's
frame stack does): an input never sees its own future, and "next_bev" (frame
t+1) is the training target only. Items are drive-major and time-ordered, so a
frame's neighbour in the index is its neighbour in time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from fleet.index import FRAME_TOPIC, DriveEntry, LogIndex
from fleet.logs import LogError, read_drive
from perception.frames import FrameStack, detector_input
from sim.config import RasterConfig

CACHED_DRIVES = 4  # decoded drives kept in memory (a 20 s drive at 128 x 128 is about 60 MB)


class LogFrameDataset(Dataset):
    """Frames of `drives` that have a next frame; see the module docstring."""

    def __init__(
        self, index: LogIndex, drives: Sequence[DriveEntry], frames: int, raster: RasterConfig, warp_mode: str
    ):
        if not drives:
            raise ValueError("LogFrameDataset: no drives (is the log folder empty, or every drive in the other split?)")
        self.index, self.drives = index, list(drives)
        self.frames, self.raster, self.warp_mode = frames, raster, warp_mode
        self.items = [(d, t) for d, entry in enumerate(self.drives) for t in range(entry.frames - 1)]
        self.episode = torch.tensor([d for d, _ in self.items], dtype=torch.long)
        self._cache: OrderedDict[int, dict[str, Tensor]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        drive, t = self.items[i]
        frames = self._drive(drive)
        past = [max(0, s) for s in range(t - self.frames + 1, t + 1)]  # the first frame repeats at the start
        stack = FrameStack(bev=frames["bev"][past][None], pose=frames["pose"][past][None], map=frames["map"][t][None])
        return {
            "input": detector_input(stack, self.raster, self.warp_mode)[0],
            "next_bev": frames["bev"][t + 1],
            "pose": frames["pose"][t],
            "next_pose": frames["pose"][t + 1],
            "episode": torch.tensor(drive),
            "step": torch.tensor(t),
            "time": frames["time"][t],
        }

    def _drive(self, d: int) -> dict[str, Tensor]:
        """Drive d's frames decoded (bev [F, 2, H, W], map [F, 3, H, W], pose [F, 3], time [F]), cached."""
        if d in self._cache:
            self._cache.move_to_end(d)
            return self._cache[d]
        path = self.index.path(self.drives[d])
        records = list(read_drive(path, {FRAME_TOPIC}))
        if len(records) != self.drives[d].frames:
            raise LogError(f"drive log {path}: {len(records)} frames, the index says {self.drives[d].frames}")
        size = self.raster.size
        bev = torch.stack([torch.from_numpy(r.tensors["frame.bev"][0]) for r in records])
        if tuple(bev.shape[-2:]) != (size, size):
            raise LogError(f"drive log {path}: frames of {tuple(bev.shape[-2:])} cells, the detector reads {size}")
        decoded = {
            "bev": bev,
            "map": torch.stack([torch.from_numpy(r.tensors["frame.map"][0]) for r in records]),
            "pose": torch.stack([torch.from_numpy(r.tensors["frame.ego_pose"][0]) for r in records]),
            "time": torch.tensor([r.time_s for r in records]),
        }
        self._cache[d] = decoded
        if len(self._cache) > CACHED_DRIVES:
            self._cache.popitem(last=False)
        return decoded

    def check_compatible(self, frames: int, raster: RasterConfig, warp_mode: str) -> None:
        """Every setting is the detector's own (this dataset builds the inputs for it)."""
        if (frames, raster, warp_mode) != (self.frames, self.raster, self.warp_mode):
            raise ValueError(f"LogFrameDataset built for {(self.frames, self.raster, self.warp_mode)}, "
                             f"asked for {(frames, raster, warp_mode)}")  # fmt: skip
