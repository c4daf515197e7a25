"""Expert drives for end-to-end training: every sensor frame with what happened next.

An expert policy (by default `pdm-gt`) drives episodes in the simulator and
each drive is logged (`sim.drivelogs`): every step keeps the frame the expert
saw and the true world state, the ego's pose and every agent's box.
`recorded_drive` reads one drive back as a `RecordedBatch` (B = 1), the form
the end-to-end job trains on (`stack.train`, `drivestack fleet train --stage
end2end`); it is held in memory (about 0.33 MB per frame on the default
raster). A training item is (episode, step): the stack perceives the frames
before it and plans at it, and the loss compares the plan with the expert's
actual future and the agents' true futures (`futures`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core.config import Timing
from sim.drivelogs.format import EGO_TOPIC, FRAME_TOPIC, TRUTH_TOPIC
from sim.drivelogs.index import DriveEntry, LogIndex
from sim.drivelogs.series import check_agent_slots, check_steps, read_series
from sim.geometry import ego_center, world_to_local
from sim.state import AgentState, EgoState
from sim.types import SensorFrame


@dataclass(frozen=True)
class RecordedBatch:
    """S steps of B episodes run together.

    Attributes:
        frames: S sensor frames, each for the B episodes.
        ego_xy: [S, B, 2] ego box centre, world frame, m.
        ego_yaw: [S, B] rad.
        agent_xy: [S, B, N, 2] agent box centres, world frame, m.
        agent_yaw: [S, B, N] rad.
        agent_size: [S, B, N, 2] (length, width), m.
        agent_valid: [S, B, N] bool.
    """

    frames: list[SensorFrame]
    ego_xy: Tensor
    ego_yaw: Tensor
    agent_xy: Tensor
    agent_yaw: Tensor
    agent_size: Tensor
    agent_valid: Tensor

    @property
    def steps(self) -> int:
        return len(self.frames)

    @property
    def batch_size(self) -> int:
        return int(self.ego_yaw.shape[1])

    def frame(self, episodes: Tensor, steps: Tensor) -> SensorFrame:
        """The frames of episodes `episodes [K]` at their own steps `steps [K]`, as one batch."""
        fields = SensorFrame.__dataclass_fields__
        parts = [self.frames[int(t)] for t in steps]
        return SensorFrame(
            **{
                name: torch.stack([getattr(p, name)[int(e)] for p, e in zip(parts, episodes, strict=True)])
                for name in fields
            }
        )


@dataclass(frozen=True)
class Futures:
    """What really happened after a step, in the ego frame of that step (the frame's localisation pose).

    Attributes:
        ego_xy: [K, T, 2] the expert's box centre at the T plan steps, m.
        agent_xy: [K, N, T, 2] the agents' box centres, m.
        agent_heading: [K, N, T, 2] unit headings.
        agent_size: [K, N, 2] (length, width), m.
        agent_valid: [K, N, T] bool.
    """

    ego_xy: Tensor
    agent_xy: Tensor
    agent_heading: Tensor
    agent_size: Tensor
    agent_valid: Tensor


def futures(batch: RecordedBatch, episodes: Tensor, steps: Tensor, timing: Timing = Timing()) -> Futures:
    """The true futures after `steps [K]` of `episodes [K]` at the plan's T sample times."""
    every = timing.sim_steps_per_sample
    later = steps[:, None] + every * torch.arange(1, timing.horizon_steps + 1)  # (K, T)
    if int(later.max()) >= batch.steps:
        raise ValueError(f"futures: step {int(steps.max())} leaves less than the {timing.horizon_s} s horizon")
    e = episodes[:, None].expand_as(later)
    pose = torch.stack([batch.frames[int(t)].ego_pose[int(b)] for t, b in zip(steps, episodes, strict=True)])  # (K, 3)
    origin, yaw = pose[:, :2].to(batch.ego_xy.dtype), pose[:, 2].to(batch.ego_xy.dtype)
    ego = world_to_local(batch.ego_xy[later, e], origin, yaw)  # (K, T, 2)
    agents = world_to_local(batch.agent_xy[later, e].transpose(1, 2), origin, yaw)  # (K, N, T, 2)
    agent_yaw = batch.agent_yaw[later, e].transpose(1, 2) - yaw[:, None, None]  # (K, N, T)
    heading = torch.stack((torch.cos(agent_yaw), torch.sin(agent_yaw)), dim=-1)
    return Futures(
        ego_xy=ego,
        agent_xy=agents,
        agent_heading=heading,
        agent_size=batch.agent_size[steps, episodes],
        agent_valid=batch.agent_valid[later, e].transpose(1, 2),
    )


def recorded_drive(index: LogIndex, entry: DriveEntry, timing: Timing) -> RecordedBatch:
    """One drive as the end-to-end job's `RecordedBatch` (B = 1): the frames the expert saw (not the final
    state's, logged after them), its own trajectory and the true agents."""
    path = index.path(entry)
    series = read_series(path, entry.frames, (FRAME_TOPIC, EGO_TOPIC, TRUTH_TOPIC))
    sensor: list[SensorFrame] = series[FRAME_TOPIC][: entry.steps]
    check_steps(path, [float(f.time[0]) for f in sensor], timing)
    ego: list[EgoState] = series[EGO_TOPIC][: entry.steps]
    agents: list[AgentState] = series[TRUTH_TOPIC][: entry.steps]
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
