"""Objects as the sensor sees them: boxes in the ego frame at the current time."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from sim.geometry import wrap_angle
from sim.sensors.pose import GEOMETRY_DTYPE, SensorPose
from sim.state import WorldState


@dataclass(frozen=True)
class EgoObjects:
    """M boxes per episode in the ego frame (float64 geometry).

    Attributes:
        xy: [B, M, 2] box centre, m, ego frame.
        yaw: [B, M] heading relative to the ego, rad, in [-pi, pi).
        velocity: [B, M, 2] absolute velocity rotated into the ego frame, m/s.
        length, width, height: [B, M] box size, m.
        kind: [B, M] long, `AgentKind`.
        present: [B, M] bool, the box is in the scene and blocks rays.
        drawn: [B, M] bool, the box returns points (present and not missed).
    """

    xy: Tensor
    yaw: Tensor
    velocity: Tensor
    length: Tensor
    width: Tensor
    height: Tensor
    kind: Tensor
    present: Tensor
    drawn: Tensor

    @property
    def slots(self) -> int:
        return int(self.present.shape[1])

    def cat(self, other: EgoObjects) -> EgoObjects:
        """Slots of `self` followed by the slots of `other`."""
        joined = {
            f.name: torch.cat((getattr(self, f.name), getattr(other, f.name)), dim=1) for f in dataclasses.fields(self)
        }
        return EgoObjects(**joined)


def agents_in_ego_frame(state: WorldState, pose: SensorPose) -> EgoObjects:
    """Every agent slot of `state` as an ego-frame box; invalid slots are not present."""
    a = state.agents
    yaw = a.yaw.to(GEOMETRY_DTYPE)
    speed = a.speed.to(GEOMETRY_DTYPE)
    world_velocity = torch.stack((speed * torch.cos(yaw), speed * torch.sin(yaw)), dim=-1)
    return EgoObjects(
        xy=pose.to_ego(a.xy),
        yaw=wrap_angle(yaw - pose.yaw.unsqueeze(-1)),
        velocity=pose.vector_to_ego(world_velocity),
        length=a.length.to(GEOMETRY_DTYPE),
        width=a.width.to(GEOMETRY_DTYPE),
        height=a.height.to(GEOMETRY_DTYPE),
        kind=a.kind,
        present=a.valid,
        drawn=a.valid,
    )
