"""Prediction windows from drive logs: each drive's true tracks sampled as the simulator's sampler samples
them, cut into windows in the ego frame of each window's present (`prediction.simdata.cut_windows`).

    windows = log_windows(index, index.drives)   # every window of every drive long enough for one
"""

from __future__ import annotations

import logging

import torch

from core.config import Timing
from prediction.simdata import TIMING, EpisodeSamples, cut_windows, sample_row
from prediction.windows import HISTORY, HORIZON, TrajectoryWindows
from sim.drivelogs.format import EGO_TOPIC, FRAME_TOPIC, TRUTH_TOPIC, LogError
from sim.drivelogs.index import DriveEntry, LogIndex
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
    rows = [sample_row(e, a, lanes_seen_from(f.lanes, f.lanes_valid, f.ego_pose, SensorPose.of(e)), f.lanes_valid)
            for e, a, f in picked]  # fmt: skip
    return EpisodeSamples(**{name: torch.stack([r[name] for r in rows], dim=1) for name in rows[0]})


def drive_windows(index: LogIndex, entry: DriveEntry, stride: int = 1) -> TrajectoryWindows | None:
    """The prediction windows of one drive, None for a drive shorter than one window."""
    check_steps(index.path(entry), entry.frame_times, Timing())  # samples are every 4th frame
    series = read_series(index.path(entry), entry.frames, (EGO_TOPIC, TRUTH_TOPIC, FRAME_TOPIC))
    check_agent_slots(index.path(entry), series[TRUTH_TOPIC])
    samples = drive_samples(series[EGO_TOPIC], series[TRUTH_TOPIC], series[FRAME_TOPIC], TIMING.sim_steps_per_sample)
    if samples.num_samples < HISTORY + HORIZON:
        log.warning("drive %s: %d frames hold no prediction window", entry.drive, entry.frames)
        return None
    return cut_windows(samples, stride)


def log_windows(index: LogIndex, drives: list[DriveEntry], stride: int = 1) -> TrajectoryWindows:
    """Every prediction window of `drives` (drives shorter than one window give none; damage raises)."""
    parts = [w for w in (drive_windows(index, entry, stride) for entry in drives) if w is not None]
    return concat_windows(index, parts)


def concat_windows(index: LogIndex, parts: list[TrajectoryWindows]) -> TrajectoryWindows:
    if not parts:
        raise LogError(f"log folder {index.root}: no drive is long enough for one prediction window")
    return TrajectoryWindows.concat(parts).trimmed()
