"""`Obstacles`: the other agents' futures as the proposal generator reads them.

Each agent has M possible futures (outcomes) with probabilities that sum to the
probability it exists: the forecast's modes weighted by existence for the
driving stack, or one constant-velocity future, believed or not, for the
rule-based baseline reading an object list.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core.config import Timing
from sim.types import ObjectList


@dataclass(frozen=True)
class Obstacles:
    """Futures of A agents with M outcomes each, ego frame now; step t lies (t + 1) sample_dt ahead.

    Attributes:
        means: [B, A, M, T, 2] box centre per outcome and step, m.
        heading: [B, A, M, T, 2] unit heading of the box.
        heading_trust: [B, A, M, T] in [0, 1]: how far `heading` is known; where it is not, the box is
            taken as aligned with the route (a standing car beside the lane).
        size: [B, A, 2] box (length, width), m.
        prob: [B, A, M] probability of each outcome (existence x mode weight; 0 for empty slots).
    """

    means: Tensor
    heading: Tensor
    heading_trust: Tensor
    size: Tensor
    prob: Tensor


def constant_velocity(objects: ObjectList, believed: Tensor, timing: Timing = Timing()) -> Obstacles:
    """One constant-velocity future per object of an object list, with probability `believed [B, M]`
    (1 for the objects a thresholding policy believes, 0 for the others)."""
    like = objects.xy
    times = (torch.arange(timing.horizon_steps, dtype=like.dtype, device=like.device) + 1) * timing.sample_dt
    means = objects.xy[:, :, None, None] + objects.velocity[:, :, None, None] * times[:, None]  # (B, M, 1, T, 2)
    heading = torch.stack((torch.cos(objects.yaw), torch.sin(objects.yaw)), dim=-1)[:, :, None, None]
    heading = heading.expand_as(means)
    prob = (believed & objects.valid).to(means.dtype)[..., None]
    return Obstacles(means, heading, torch.ones_like(means[..., 0]), torch.stack((objects.length, objects.width), -1),
                     prob)  # fmt: skip
