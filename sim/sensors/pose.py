"""The sensor's pose: the ego box centre and heading, in float64.

Sensor geometry runs in float64 and uses only trigonometry of per-episode or
per-object angles plus elementwise multiply/add on points. Vectorised and
scalar kernels of transcendental functions may differ in the last bit, and
which one an element meets depends on where it sits in the batch; computing
them in float64 keeps such differences ~1e-16 m, far too small to move a point
across a cell or bearing-bin boundary, so a frame does not depend on the batch
it was rendered in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sim.geometry import ego_center
from sim.state import EgoState

GEOMETRY_DTYPE = torch.float64


@dataclass(frozen=True)
class SensorPose:
    """World pose of the sensor origin (the ego box centre).

    Attributes:
        center: [B, 2] float64, world frame, m.
        yaw: [B] float64, rad.
        cos, sin: [B] float64, of `yaw`.
    """

    center: Tensor
    yaw: Tensor
    cos: Tensor
    sin: Tensor

    @classmethod
    def of(cls, ego: EgoState) -> SensorPose:
        ego64 = ego.to(dtype=GEOMETRY_DTYPE)
        yaw = ego64.yaw
        return cls(center=ego_center(ego64), yaw=yaw, cos=torch.cos(yaw), sin=torch.sin(yaw))

    def _expand(self, value: Tensor, extra: int) -> Tensor:
        return value.reshape(value.shape[:1] + (1,) * extra)

    def to_ego(self, xy: Tensor) -> Tensor:
        """World points `[B, ..., 2]` -> ego frame (x forward, y left), float64."""
        extra = xy.dim() - 2
        c, s = self._expand(self.cos, extra), self._expand(self.sin, extra)
        rel = xy.to(GEOMETRY_DTYPE) - self.center.reshape(-1, *([1] * extra), 2)
        x, y = rel[..., 0], rel[..., 1]
        return torch.stack((c * x + s * y, c * y - s * x), dim=-1)

    def vector_to_ego(self, vec: Tensor) -> Tensor:
        """World vectors `[B, ..., 2]` (velocities) rotated into the ego frame, float64."""
        extra = vec.dim() - 2
        c, s = self._expand(self.cos, extra), self._expand(self.sin, extra)
        v = vec.to(GEOMETRY_DTYPE)
        return torch.stack((c * v[..., 0] + s * v[..., 1], c * v[..., 1] - s * v[..., 0]), dim=-1)

    def pose3(self) -> Tensor:
        """[B, 3] (x, y, yaw) of the sensor origin, world frame, float64."""
        return torch.cat((self.center, self.yaw.unsqueeze(-1)), dim=-1)
