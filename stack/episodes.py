"""Expert episodes recorded for end-to-end training: every sensor frame with what happened next.

An expert policy (by default `pdm-gt`) drives a batch of episodes in the
simulator; every step keeps the frame the stack would have seen and the true
world state: the ego's box-centre pose and every agent's box. A training item
is then (episode, step): the stack perceives the frames before it and plans
at it, and the loss compares the plan with the expert's actual future and the
agents' true futures (`stack.train`). Everything is held in memory (about
0.33 MB per frame on the default raster). `recorded_drive` reads the same
batch from a drive log (`sim.drivelogs`), for `drivestack fleet train --stage end2end`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from core.config import Timing
from sim.config import RasterConfig
from sim.drivelogs.format import EGO_TOPIC, FRAME_TOPIC, TRUTH_TOPIC
from sim.drivelogs.series import check_agent_slots, check_steps, read_series
from sim.geometry import ego_center, world_to_local
from sim.policies import make_policy
from sim.runner import rollout
from sim.scenarios import build_batch, episode_steps, resolve_suite
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


def record(suite: str, seeds: list[int], policy: str = "pdm-gt", raster: RasterConfig = RasterConfig(),
           timing: Timing = Timing()) -> list[RecordedBatch]:  # fmt: skip
    """One `RecordedBatch` per scenario of `suite`, each running `seeds` together, driven by `policy`."""
    return [_record_scenario(scenario, seeds, policy, raster, timing) for scenario in resolve_suite(suite)]


def _record_scenario(scenario, seeds: list[int], policy: str, raster: RasterConfig, timing: Timing) -> RecordedBatch:
    state = build_batch(scenario, seeds, timing=timing)
    frames: list[SensorFrame] = []
    truth: dict[str, list[Tensor]] = {
        name: [] for name in ("ego_xy", "ego_yaw", "agent_xy", "agent_yaw", "agent_size", "agent_valid")
    }

    def observe(s, obs, _plan) -> None:
        frames.append(obs.frame)
        truth["ego_xy"].append(ego_center(s.ego))
        truth["ego_yaw"].append(s.ego.yaw)
        truth["agent_xy"].append(s.agents.xy)
        truth["agent_yaw"].append(s.agents.yaw)
        truth["agent_size"].append(torch.stack((s.agents.length, s.agents.width), dim=-1))
        truth["agent_valid"].append(s.agents.valid)

    rollout(state, make_policy(policy), episode_steps(scenario, timing), timing=timing, raster=raster, observer=observe)
    return RecordedBatch(frames=frames, **{name: torch.stack(values) for name, values in truth.items()})


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
