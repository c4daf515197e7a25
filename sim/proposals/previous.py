"""The previous step's plan, kept in the world frame and offered again as a proposal (plan consistency)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core.config import Timing
from core.contracts import TensorContract, spec
from sim.geometry import local_to_world, world_to_local
from sim.proposals.simulate import Reference
from sim.types import SensorFrame


@dataclass(frozen=True)
class PreviousPlan(TensorContract):
    """The plan a planner chose last, world frame, so it survives the ego's motion.

    Attributes:
        xy: [B, T, 2] float, box-centre positions at the plan steps, m, world frame.
        yaw: [B, T] float, headings there, rad, world frame.
        speed: [B, T] float, speeds there, m/s.
        time: [B] float, the frame time it was made at, s.
        valid: [B] bool, there is one (false before the first plan).
    """

    xy: Tensor = spec(("B", "T", 2))
    yaw: Tensor = spec(("B", "T"))
    speed: Tensor = spec(("B", "T"), low=0.0)
    time: Tensor = spec(("B",))
    valid: Tensor = spec(("B",), "bool")

    @classmethod
    def none(cls, frame: SensorFrame, timing: Timing = Timing()) -> PreviousPlan:
        """No previous plan, for the first step of every episode of `frame`'s batch."""
        zeros = frame.ego_speed.new_zeros(frame.ego_speed.shape[0], timing.horizon_steps)
        return cls(zeros[..., None].expand(-1, -1, 2).clone(), zeros, zeros.clone(), frame.time.clone(),
                   torch.zeros_like(frame.ego_speed, dtype=torch.bool))  # fmt: skip

    @classmethod
    def remember(cls, reference: Reference, frame: SensorFrame) -> PreviousPlan:
        """The chosen reference ([B, T], ego frame of `frame`) kept in the world frame."""
        pose = frame.ego_pose.to(reference.xy.dtype)
        xy = local_to_world(reference.xy, pose[:, :2], pose[:, 2])
        return cls(xy, reference.yaw + pose[:, 2:3], reference.speed, frame.time.to(xy.dtype),
                   torch.ones_like(frame.ego_speed, dtype=torch.bool))  # fmt: skip

    def retimed(self, frame: SensorFrame, timing: Timing) -> Reference:
        """The plan as a proposal now: each step (t + 1) sample_dt after this frame (later than it was
        planned for by the time elapsed; past its end it goes on at its last step's velocity), in this
        frame's ego frame. [B, 1, T]."""
        elapsed = (frame.time.to(self.xy.dtype) - self.time)[:, None]  # (B, 1)
        T = self.xy.shape[1]
        times = (torch.arange(T, dtype=elapsed.dtype, device=elapsed.device) + 1.0) * timing.sample_dt + elapsed
        xy = interpolate_steps(self.xy, times, timing.sample_dt)
        if T > 1:  # the part past the end: on along the last step
            beyond = (times / timing.sample_dt - T).clamp_min(0.0)[..., None]
            xy = xy + beyond * (self.xy[:, -1:] - self.xy[:, -2:-1])
        heading = torch.stack((torch.cos(self.yaw), torch.sin(self.yaw)), dim=-1)
        heading = interpolate_steps(heading, times, timing.sample_dt)
        speed = interpolate_steps(self.speed[..., None], times, timing.sample_dt)[..., 0]
        pose = frame.ego_pose.to(xy.dtype)
        local = world_to_local(xy, pose[:, :2], pose[:, 2])
        yaw = torch.atan2(heading[..., 1], heading[..., 0]) - pose[:, 2:3]
        yaw = torch.atan2(torch.sin(yaw), torch.cos(yaw))
        return Reference(local[:, None], yaw[:, None], speed[:, None])


def interpolate_steps(values: Tensor, times: Tensor, dt: float) -> Tensor:
    """`values [B, T, D]` sampled at (t + 1) dt, read at `times [B, T]` (linear; held past either end)."""
    T = values.shape[1]
    if T == 1:
        return values.expand(-1, times.shape[1], -1)
    position = (times / dt - 1.0).clamp(0.0, T - 1.0)
    low = position.floor().long().clamp(max=T - 2)
    frac = (position - low.to(position.dtype)).unsqueeze(-1)
    gather = lambda idx: values.gather(1, idx.unsqueeze(-1).expand(-1, -1, values.shape[-1]))  # noqa: E731
    return gather(low) * (1.0 - frac) + gather(low + 1) * frac
