"""Prediction windows from drive logs: each drive's true tracks sampled as the simulator's sampler samples
them (every 4th step, the final state's included), cut into windows in the ego frame of each window's present
(`prediction.simdata.cut_windows`).

    windows = log_windows(index, index.drives)   # every window of every drive long enough for one
    windows, drive_of = drive_windows_of(index, index.drives)   # and which drive each window is from
    windows = folder_windows("logs/train")       # a folder's drives in their suite's order

The windows of a suite's drives, recorded in one batch per scenario as the
suite runs them, are bit for bit those the simulator's sampler cut in the same
run (tested): the logs are the prediction jobs' only recorded data.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from core.config import Timing
from prediction.simdata import TIMING, EpisodeSamples, cut_windows, sample_row
from prediction.windows import HISTORY, HORIZON, TrajectoryWindows
from sim.drivelogs.format import EGO_TOPIC, FRAME_TOPIC, TRUTH_TOPIC, LogError
from sim.drivelogs.index import DriveEntry, LogIndex, build_index
from sim.drivelogs.series import check_agent_slots, check_steps, read_series
from sim.sensors.lanes import lanes_seen_from
from sim.sensors.pose import SensorPose
from sim.state import AgentState, EgoState
from sim.types import SensorFrame

log = logging.getLogger(__name__)


def drive_samples(
    ego: list[EgoState], agents: list[AgentState], frames: list[SensorFrame], every: int
) -> EpisodeSamples:
    """One drive (B = 1) sampled every `every` frames from frame 0, as the simulator's sampler samples; the
    lanes are each sensor frame's (`SensorFrame.lanes`), moved from its localised pose to the true one."""
    if not (len(ego) == len(agents) == len(frames)) or not ego:
        raise ValueError(f"drive_samples: {len(ego)} ego states, {len(agents)} agent states and {len(frames)} "
                         "sensor frames")  # fmt: skip
    picked = zip(ego[::every], agents[::every], frames[::every], strict=True)
    rows = [sample_row(e, a, _true_pose_lanes(e, f), f.lanes_valid) for e, a, f in picked]
    return EpisodeSamples(**{name: torch.stack([r[name] for r in rows], dim=1) for name in rows[0]})


def _true_pose_lanes(ego: EgoState, frame: SensorFrame) -> Tensor:
    """The frame's lanes in the frame of the ego's true pose. Where the frame was seen from that pose (the
    simulator's sensor has no localisation noise) they are used as they are, exactly the simulator's sampler's;
    moving them from one float32 pose to the other would cost a few ulps."""
    true = SensorPose.of(ego)
    if torch.equal(frame.ego_pose, true.pose3().to(frame.ego_pose.dtype)):
        return frame.lanes
    return lanes_seen_from(frame.lanes, frame.lanes_valid, frame.ego_pose, true)


def logged_samples(index: LogIndex, entry: DriveEntry) -> EpisodeSamples:
    """One drive's samples (B = 1): every 4th frame from frame 0, the final state's included when it falls on
    one, as the prediction windows sample it."""
    check_steps(index.path(entry), entry.frame_times, Timing())  # samples are every 4th frame
    series = read_series(index.path(entry), entry.frames, (EGO_TOPIC, TRUTH_TOPIC, FRAME_TOPIC))
    check_agent_slots(index.path(entry), series[TRUTH_TOPIC])
    return drive_samples(series[EGO_TOPIC], series[TRUTH_TOPIC], series[FRAME_TOPIC], TIMING.sim_steps_per_sample)


def drive_windows(index: LogIndex, entry: DriveEntry, stride: int = 1) -> TrajectoryWindows | None:
    """The prediction windows of one drive, None for a drive shorter than one window."""
    samples = logged_samples(index, entry)
    if samples.num_samples < HISTORY + HORIZON:
        log.warning("drive %s: %d frames hold no prediction window", entry.drive, entry.frames)
        return None
    return cut_windows(samples, stride)


def log_windows(index: LogIndex, drives: list[DriveEntry], stride: int = 1) -> TrajectoryWindows:
    """Every prediction window of `drives` (drives shorter than one window give none; damage raises)."""
    return drive_windows_of(index, drives, stride)[0]


def drive_windows_of(index: LogIndex, drives: list[DriveEntry], stride: int = 1) -> tuple[TrajectoryWindows, Tensor]:
    """Every prediction window of `drives`, and [S] the index into `drives` of the drive each comes from (split
    or group by drive: windows of one drive overlap)."""
    parts, drive_of = [], []
    for d, entry in enumerate(drives):
        windows = drive_windows(index, entry, stride)
        if windows is not None:
            parts.append(windows)
            drive_of.append(torch.full((windows.batch_size,), d, dtype=torch.long))
    return concat_windows(index, parts), torch.cat(drive_of) if drive_of else torch.zeros(0, dtype=torch.long)


def folder_windows(folder: str | Path, stride: int = 1) -> TrajectoryWindows:
    """Every prediction window of the drives in the log folder `folder`, in their suite's order (broken logs
    are reported and left out)."""
    index = build_index(folder)
    index.warn_broken()
    return log_windows(index, index.drives, stride)


def concat_windows(index: LogIndex, parts: list[TrajectoryWindows]) -> TrajectoryWindows:
    if not parts:
        raise LogError(f"log folder {index.root}: no drive is long enough for one prediction window")
    return TrajectoryWindows.concat(parts).trimmed()
