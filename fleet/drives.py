"""A drive log decoded as time series, and what the prediction and planning stages train on.

    series = read_series(path, entry.frames, (EGO_TOPIC, TRUTH_TOPIC, FRAME_TOPIC))  # one per frame
    samples = drive_samples(*(series[t] for t in (EGO_TOPIC, TRUTH_TOPIC, FRAME_TOPIC)), every=4)  # prediction
    recorded = recorded_drive(path, entry.frames, Timing())  # RecordedBatch (end-to-end)

The recorder writes every topic once per simulator step, so the records of
each topic line up with the frames one to one; a log where they do not (a
topic missing, a message dropped, steps not `sim_dt` apart) is a `LogError`
naming the file and what is missing, so a job can report it and go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from core.config import Timing
from prediction.simdata import EpisodeSamples, sample_row
from sim.drivelogs.format import EGO_TOPIC, FRAME_TOPIC, TRUTH_TOPIC, LogError, read_drive
from sim.geometry import ego_center
from sim.sensors.lanes import lanes_seen_from
from sim.sensors.pose import SensorPose
from sim.state import AgentState, EgoState
from sim.types import SensorFrame
from stack.episodes import RecordedBatch

STEP_TOLERANCE = 1e-4  # s: logged times are float32 sums of sim_dt


def read_series(path: str | Path, frames: int, topics: Sequence[str]) -> dict[str, list]:
    """The contracts of `topics` in time order, one per frame (`LogRecord.contract`), checked to line up."""
    series: dict[str, list] = {topic: [] for topic in topics}
    times: dict[str, list[float]] = {topic: [] for topic in topics}
    for record in read_drive(path, set(topics)):
        try:
            series[record.topic].append(record.contract())
        except LogError as exc:
            raise LogError(f"drive log {path}: {exc}") from exc
        times[record.topic].append(record.time_s)
    for topic in topics:
        if len(series[topic]) != frames:
            hint = " (recorded before this channel existed?)" if not series[topic] else ""
            raise LogError(f"drive log {path}: {len(series[topic])} messages on {topic}, expected one per frame "
                           f"({frames}){hint}")  # fmt: skip
    first = times[topics[0]]
    for topic in topics[1:]:
        if any(abs(a - b) > STEP_TOLERANCE for a, b in zip(first, times[topic], strict=True)):
            raise LogError(f"drive log {path}: {topic} is not logged at the times of {topics[0]}")
    return series


def check_steps(path: str | Path, times: Sequence[float], timing: Timing) -> None:
    """The frames are consecutive simulator steps (`timing.sim_dt` apart)."""
    gaps = torch.diff(torch.tensor(times, dtype=torch.float64))
    if len(gaps) and (gaps - timing.sim_dt).abs().max() > STEP_TOLERANCE:
        worst = int((gaps - timing.sim_dt).abs().argmax())
        raise LogError(f"drive log {path}: frames {worst} and {worst + 1} are {float(gaps[worst]):.4f} s apart, "
                       f"expected every sim step ({timing.sim_dt} s)")  # fmt: skip


def check_agent_slots(path: str | Path, agents: list[AgentState]) -> None:
    """Slot n is one agent for the whole drive (the simulator never resizes its agent slots)."""
    if len({tuple(a.xy.shape) for a in agents}) > 1:
        raise LogError(f"drive log {path}: the number of agent slots changes during the drive")


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


def recorded_drive(path: str | Path, frames: int, timing: Timing) -> RecordedBatch:
    """One drive as the end-to-end job's `RecordedBatch` (B = 1): the frames the expert saw, its own
    trajectory and the true agents."""
    series = read_series(path, frames, (FRAME_TOPIC, EGO_TOPIC, TRUTH_TOPIC))
    sensor: list[SensorFrame] = series[FRAME_TOPIC]
    check_steps(path, [float(f.time[0]) for f in sensor], timing)
    ego: list[EgoState] = series[EGO_TOPIC]
    agents: list[AgentState] = series[TRUTH_TOPIC]
    check_agent_slots(path, agents)
    return RecordedBatch(  # every tensor [S, 1, ...]: S frames of one episode
        frames=sensor,
        ego_xy=torch.stack([ego_center(e) for e in ego]),
        ego_yaw=torch.stack([e.yaw for e in ego]),
        agent_xy=torch.stack([a.xy for a in agents]),
        agent_yaw=torch.stack([a.yaw for a in agents]),
        agent_size=torch.stack([torch.stack((a.length, a.width), dim=-1) for a in agents]),
        agent_valid=torch.stack([a.valid for a in agents]),
    )
