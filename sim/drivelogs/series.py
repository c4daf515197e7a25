"""A drive log decoded as time series: one contract per frame of each topic, checked to line up.

    series = read_series(path, entry.frames, (EGO_TOPIC, TRUTH_TOPIC, FRAME_TOPIC))  # one per frame

The recorder writes every topic once per simulator step, so the records of
each topic line up with the frames one to one; a log where they do not (a
topic missing, a message dropped, steps not `sim_dt` apart) is a `LogError`
naming the file and what is missing, so a job can report it and go on. The
training readers build on it: prediction windows (`prediction.logwindows`) and
the end-to-end job's batches (`stack.episodes.recorded_drive`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from core.config import Timing
from sim.drivelogs.format import LogError, read_drive
from sim.state import AgentState

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
