"""Swept separating-axis test between the ego box and every agent box.

Under constant velocity and constant heading (nuPlan's TTC projection) the
boxes only translate, so the four separating axes (two per box) never turn and
each box's projection on an axis moves linearly in time. Each axis then gives
the closed interval of times during which the projections overlap, and the
boxes overlap exactly on the intersection of the four intervals. One pass over
`[B, N, 4]` therefore answers both "do they overlap now?" (t = 0, the same test
as `sim.geometry.boxes_overlap`) and "at which of the projection steps
0.1, 0.2, ..., 3.0 s do they first overlap?" without materialising `[B, K, N]`
projected boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

_STILL = 1e-9  # relative speed along an axis below which the gap is constant, m/s


@dataclass(frozen=True)
class BoxSweep:
    """Times `[enter, exit]` (s, [B, N]) when the boxes overlap; empty when enter > exit.

    Either end may be infinite (boxes that never separate along some axis).
    """

    enter: Tensor
    exit: Tensor

    @property
    def overlap_now(self) -> Tensor:
        """[B, N] bool: the boxes overlap (or touch) at t = 0."""
        return (self.enter <= 0) & (self.exit >= 0)

    def first_hit(self, step: float, num_steps: int) -> Tensor:
        """[B, N] float: the first of the times `step * k`, k = 1..num_steps, at which the
        boxes overlap, inf if none (sampling the sweep exactly as nuPlan steps it)."""
        k = torch.ceil(self.enter / step - 1e-6).clamp_min(1.0)  # (B, N)
        t = k * step
        hit = (k <= num_steps) & (t <= self.exit + 1e-6)
        return torch.where(hit, t, torch.full_like(t, float("inf")))


def sweep_boxes(
    ego_xy: Tensor,
    ego_yaw: Tensor,
    ego_half: Tensor,
    ego_vel: Tensor,
    agent_xy: Tensor,
    agent_yaw: Tensor,
    agent_half: Tensor,
    agent_vel: Tensor,
) -> BoxSweep:
    """Overlap interval of the ego box with each agent box, both moving at constant velocity.

    Args:
        ego_xy: [B, 2] box centre, m. ego_yaw: [B] rad.
        ego_half: [B, 2] half length and half width, m. ego_vel: [B, 2] m/s.
        agent_xy: [B, N, 2] box centres, m. agent_yaw: [B, N] rad.
        agent_half: [B, N, 2] half lengths and widths, m. agent_vel: [B, N, 2] m/s.
    """
    # Components kept apart ([B, N] each): cheaper than [B, N, 4, 2] dot products.
    ce, se = torch.cos(ego_yaw)[:, None], torch.sin(ego_yaw)[:, None]  # (B, 1)
    ca, sa = torch.cos(agent_yaw), torch.sin(agent_yaw)  # (B, N)
    dx, dy = agent_xy[..., 0] - ego_xy[:, None, 0], agent_xy[..., 1] - ego_xy[:, None, 1]
    vx, vy = agent_vel[..., 0] - ego_vel[:, None, 0], agent_vel[..., 1] - ego_vel[:, None, 1]
    cos = (ce * ca + se * sa).abs()  # |cos| of the heading difference
    sin = (se * ca - ce * sa).abs()
    hl_e, hw_e = ego_half[:, None, 0], ego_half[:, None, 1]  # (B, 1)
    hl_a, hw_a = agent_half[..., 0], agent_half[..., 1]  # (B, N)

    def along_axes(x: Tensor, y: Tensor) -> Tensor:
        """(x, y) on the ego's heading and normal, then the agent's: (B, N, 4)."""
        return torch.stack((x * ce + y * se, y * ce - x * se, x * ca + y * sa, y * ca - x * sa), dim=-1)

    gap = along_axes(dx, dy)  # centre distance along each axis
    rate = along_axes(vx, vy)  # its rate of change
    # Sum of the two boxes' projected half extents on each axis.
    reach = torch.stack(
        (
            hl_e + hl_a * cos + hw_a * sin,
            hw_e + hl_a * sin + hw_a * cos,
            hl_a + hl_e * cos + hw_e * sin,
            hw_a + hl_e * sin + hw_e * cos,
        ),
        dim=-1,
    )  # (B, N, 4)
    moving = rate.abs() > _STILL
    inv_rate = 1.0 / torch.where(moving, rate, torch.ones_like(rate))
    t1 = (-reach - gap) * inv_rate
    t2 = (reach - gap) * inv_rate
    inf = torch.full_like(gap, float("inf"))
    inside = gap.abs() <= reach
    lo = torch.where(moving, torch.minimum(t1, t2), torch.where(inside, -inf, inf))
    hi = torch.where(moving, torch.maximum(t1, t2), torch.where(inside, inf, -inf))
    return BoxSweep(enter=lo.amax(-1), exit=hi.amin(-1))
