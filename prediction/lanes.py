"""What the predictor reads off the lane centrelines directly: their directions of travel, and the heading
a vehicle standing on a lane has (the tracker does not track heading, and a standing vehicle's velocity
has none).

Lanes come as `SensorFrame.lanes`: `[B, N, P, 2]` points in each lane's direction of travel, with a mask.
"""

from __future__ import annotations

import torch
from torch import Tensor

# A vehicle on a lane heads along it: the hint's size at standstill, m/s, and the speed scale over which it
# fades so the vehicle's own motion decides its heading (`dynamics.unicycle_state`): walking pace, above
# the tracker's velocity noise on a standing car. At 2 m/s it is 0.14 m/s (4 deg at most), at 3 m/s 0.01.
HINT_SPEED = 1.0
# m: how far from a lane point the hint fades (Gaussian std). Points are 3 m apart, so a vehicle on the
# centreline is at most 1.5 m from one (weight 0.75); one in the next lane, 3.5 m across, gets 0.2 of it.
SNAP = 2.0


def lane_directions(lanes: Tensor, valid: Tensor) -> Tensor:
    """[B, N, P, 2] unit direction of travel at each lane point: the sum of its segments to the previous
    and the next point (those that exist), normalised; 0 at a lone point."""
    segment = lanes[:, :, 1:] - lanes[:, :, :-1]
    segment = torch.where((valid[:, :, 1:] & valid[:, :, :-1])[..., None], segment, torch.zeros_like(segment))
    zero = torch.zeros_like(segment[:, :, :1])
    both = torch.cat((segment, zero), dim=2) + torch.cat((zero, segment), dim=2)
    return both / (both.square().sum(-1, keepdim=True) + 1e-12).sqrt().clamp_min(1e-3)


def heading_hint(position: Tensor, velocity: Tensor, lanes: Tensor, valid: Tensor) -> Tensor:
    """[B, A, 2] m/s: `HINT_SPEED` along the direction of the lane point nearest each agent at
    `position [B, A, 2]`, weighted by exp(-d^2 / 2 SNAP^2) of its distance d and faded out with the
    agent's speed |`velocity`| as exp(-|v|^2 / 2 HINT_SPEED^2), so it decides the heading of a standing
    vehicle and leaves a moving one's to its motion; 0 with no lane point."""
    lanes = torch.where(valid[..., None], lanes, torch.zeros_like(lanes))  # masked points may hold anything
    direction = lane_directions(lanes, valid).flatten(1, 2)  # [B, N P, 2]
    gap = (lanes.flatten(1, 2)[:, None] - position[:, :, None]).square().sum(-1)  # [B, A, N P]
    weight = torch.where(valid.flatten(1, 2)[:, None], torch.exp(-0.5 * gap / SNAP**2), torch.zeros_like(gap))
    best, index = weight.max(dim=-1)  # [B, A]
    nearest = torch.gather(direction, 1, index[..., None].expand(*index.shape, 2))  # [B, A, 2]
    fade = torch.exp(-0.5 * velocity.square().sum(-1) / HINT_SPEED**2)  # [B, A]
    return (HINT_SPEED * best * fade)[..., None] * nearest
