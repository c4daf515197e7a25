"""A rule-based planner in the style of PDM-Closed (Dauner et al., 2023).

One step reads as PDM-Closed's does:

1. Observe: the believed objects (score >= threshold, or ground truth) with
   constant-velocity forecasts (`sim.proposals.constant_velocity`).
2. Propose and drive: the shared proposals (`sim.proposals.generate`: IDM
   along offset paths and lane changes behind the nearest believed object,
   stops, the previous plan), each driven through the simulator's controller
   and bicycle.
3. Score what was driven, deterministically, as PDM-Closed scores it:
   multipliers (no at-fault collision, drivable area) times a weighted average
   of progress (5), time to collision (5) and comfort (2).
4. Follow the best; when every proposal collides, the one that collides last.

The driving stack's planner (`planning`) uses the same proposals with the
forecast's full distribution instead of thresholded objects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from core.config import ConfigError, Timing
from sim.config import RasterConfig
from sim.ego import EGO_HALF_LENGTH, EGO_HALF_WIDTH
from sim.geometry import obb_overlap
from sim.policies.base import Observation, Overlay, PolicyOutput
from sim.policies.idm import select_objects
from sim.proposals import Obstacles, PreviousPlan, ProposalConfig, Proposals, constant_velocity, generate
from sim.proposals.route import to_route
from sim.proposals.simulate import with_halfway
from sim.sensors.raster import read_map
from sim.types import SensorFrame

COMFORT_ACCEL = (-4.05, 2.40)  # m/s^2, nuPlan's longitudinal comfort bounds
COMFORT_LATERAL = 4.89  # m/s^2
COMFORT_YAW_RATE = 0.95  # rad/s


@dataclass(frozen=True)
class PDMConfig:
    """Proposals, belief and scoring.

    Attributes:
        proposals: the shared proposal generator's settings.
        threshold: existence score at which a detection is believed (None: ground truth, all believed).
        ttc_threshold: a proposal keeps the TTC term only if the ego's box, stretched ahead by this
            many seconds at its speed, meets nothing, s.
    """

    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    threshold: float | None = 0.5
    ttc_threshold: float = 0.95

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"PDMConfig.threshold: expected in [0, 1] or None, got {self.threshold!r}")
        if not (isinstance(self.ttc_threshold, int | float) and math.isfinite(self.ttc_threshold)
                and self.ttc_threshold >= 0):  # fmt: skip
            raise ConfigError(f"PDMConfig.ttc_threshold: expected >= 0 s, got {self.ttc_threshold!r}")


class PDMClosed:
    """Deterministic scoring of the shared proposals on constant-velocity forecasts of believed objects.
    Its recurrent state is the previous plan (`sim.proposals.PreviousPlan`)."""

    name: ClassVar[str] = "pdm"
    inputs: ClassVar[frozenset[str]] = frozenset({"detections"})

    def __init__(
        self, config: PDMConfig = PDMConfig(), timing: Timing = Timing(), raster: RasterConfig = RasterConfig()
    ):
        self.config, self.timing, self.raster = config, timing, raster

    def initial_state(self, batch: int, device: Any) -> None:
        return None  # no previous plan before the first step

    def act(self, state: PreviousPlan | None, obs: Observation) -> tuple[PolicyOutput, PreviousPlan]:
        threshold = self.config.threshold
        objects = select_objects(obs, threshold)
        believed = objects.valid if threshold is None else objects.valid & (objects.score >= threshold)
        return self.plan(obs.frame, constant_velocity(objects, believed, self.timing), state)

    def plan(
        self, frame: SensorFrame, obstacles: Obstacles, previous: PreviousPlan | None
    ) -> tuple[PolicyOutput, PreviousPlan]:
        """Propose, drive, score and choose among `obstacles` (one future each, believed when its
        probability is > 0); returns the plan and the new previous plan."""
        _check_raster(frame, self.raster)
        proposals = generate(frame, obstacles, previous, self.config.proposals, self.timing, self.raster)
        score = self.score(frame, obstacles, proposals)
        best = score.argmax(-1)  # the first maximum: offset 0, fastest target on ties
        reference = proposals.reference
        chosen = type(reference)(*(_take(getattr(reference, f), best) for f in ("xy", "yaw", "speed")))
        overlay = Overlay(candidates=proposals.driven.xy, candidate_weights=score.clamp(0.0, 1.0), chosen=best)
        output = PolicyOutput(trajectory=chosen.xy, speeds=chosen.speed, overlay=overlay)
        return output, PreviousPlan.remember(chosen, frame)

    def score(self, frame: SensorFrame, obstacles: Obstacles, proposals: Proposals) -> Tensor:
        """PDM-style score [B, C]: safe proposals in [0, 1]; unsafe ones below 0, ranked by how late
        they collide (so the least bad wins when none is safe); proposals that do not exist -2."""
        driven, horizon = proposals.driven, self.timing.horizon_s
        hit_time, stretched_hit = self._collisions(obstacles, proposals)
        collides = hit_time < horizon
        drivable = _stays_drivable(frame, driven.xy, driven.yaw, self.raster)
        safe = ~collides & drivable
        progress, _, _ = to_route(frame.route, driven.xy[:, :, -1])  # (B, C) arc length reached
        best = torch.where(safe & proposals.valid, progress, torch.zeros_like(progress)).amax(-1, keepdim=True)
        progress_term = (progress / best.clamp_min(1.0)).clamp(0.0, 1.0)
        ttc_term = (~stretched_hit).to(progress.dtype)
        weighted = (5 * progress_term + 5 * ttc_term + 2 * _comfortable(proposals).to(progress.dtype)) / 12.0
        fallback = -1.0 + 0.5 * (hit_time / horizon).clamp(0.0, 1.0) + 0.25 * drivable.to(progress.dtype)
        score = torch.where(safe, weighted, fallback)
        return torch.where(proposals.valid, score, torch.full_like(score, -2.0))

    def _collisions(self, obstacles: Obstacles, proposals: Proposals) -> tuple[Tensor, Tensor]:
        """First time [B, C] the ego's driven box meets a believed obstacle's box (inf when never), and
        whether the TTC-stretched box meets one, checked at the plan steps and halfway between them.
        Each obstacle's first outcome is its future; obstacles starting behind the ego are left out (what
        they do from behind is not the ego's fault)."""
        driven, dt = proposals.driven, self.timing.sample_dt
        xy, yaw, speed = (with_halfway(x, dim=2) for x in (driven.xy, driven.yaw, driven.speed))  # (B, C, 2T, ...)
        times = (torch.arange(xy.shape[2], dtype=xy.dtype, device=xy.device) + 1) * (0.5 * dt)
        obj_xy = with_halfway(obstacles.means[:, :, 0], dim=2).transpose(1, 2)  # (B, 2T, M, 2)
        heading = with_halfway(obstacles.heading[:, :, 0], dim=2).transpose(1, 2)
        obj_yaw = torch.atan2(heading[..., 1], heading[..., 0])  # (B, 2T, M)
        length, width = obstacles.size[..., 0][:, None, None], obstacles.size[..., 1][:, None, None]
        first = obstacles.means[:, :, 0, 0]  # (B, M, 2) at the first plan step
        start = first - (obstacles.means[:, :, 0, 1] - first)  # about now (constant velocity back one step)
        ahead = start[..., 0] + 0.5 * obstacles.size[..., 0] > -EGO_HALF_LENGTH
        believed = ((obstacles.prob[..., 0] > 0) & ahead)[:, None, None]  # (B, 1, 1, M)
        obj = (obj_xy[:, None], obj_yaw[:, None], length, width)
        ego_len = torch.full_like(speed, 2 * EGO_HALF_LENGTH).unsqueeze(-1)  # (B, C, 2T, 1)
        ego_wid = torch.full_like(ego_len, 2 * EGO_HALF_WIDTH)
        hit = obb_overlap(xy.unsqueeze(-2), yaw.unsqueeze(-1), ego_len, ego_wid, *obj) & believed
        stretch = (speed * self.config.ttc_threshold).unsqueeze(-1)  # (B, C, 2T, 1)
        forward = torch.stack((torch.cos(yaw), torch.sin(yaw)), dim=-1)
        ahead_xy = (xy + forward * (0.5 * stretch)).unsqueeze(-2)
        stretched = obb_overlap(ahead_xy, yaw.unsqueeze(-1), ego_len + stretch, ego_wid, *obj) & believed
        never = torch.full_like(speed, float("inf"))
        first_hit = torch.where(hit.any(-1), times.expand_as(speed), never)
        return first_hit.amin(-1), stretched.flatten(2).any(-1)


def _comfortable(proposals: Proposals) -> Tensor:
    """[B, C] the driven proposal stays within nuPlan's acceleration, lateral acceleration and yaw-rate bounds."""
    d = proposals.driven
    lon = (d.accel >= COMFORT_ACCEL[0]) & (d.accel <= COMFORT_ACCEL[1])
    return (lon & (d.lateral_accel.abs() <= COMFORT_LATERAL) & (d.yaw_rate.abs() <= COMFORT_YAW_RATE)).all(-1)


def _stays_drivable(frame: SensorFrame, xy: Tensor, yaw: Tensor, raster: RasterConfig) -> Tensor:
    """Whether the front corners of the ego stay on drivable cells along every driven proposal -> [B, C]."""
    forward = torch.stack((torch.cos(yaw), torch.sin(yaw)), dim=-1)
    left = torch.stack((-forward[..., 1], forward[..., 0]), dim=-1)
    front = xy + forward * EGO_HALF_LENGTH
    corners = torch.stack((front + left * EGO_HALF_WIDTH, front - left * EGO_HALF_WIDTH), dim=-2)  # (B, C, T, 2, 2)
    return (read_map(frame.map[:, :1], corners, raster) > 0.5).flatten(2).all(-1)


def _check_raster(frame: SensorFrame, raster: RasterConfig) -> None:
    if tuple(frame.map.shape[-2:]) != (raster.size, raster.size):
        raise ValueError(f"SensorFrame.map: {tuple(frame.map.shape[-2:])} cells, but the PDM policy was built for a "
                         f"raster of {raster.size} cells (make_policy(..., raster=...))")  # fmt: skip


def _take(values: Tensor, index: Tensor) -> Tensor:
    """values[b, index[b]] for values [B, C, ...] -> [B, ...]."""
    shape = (index.shape[0], 1, *values.shape[2:])
    return values.gather(1, index.reshape(-1, *([1] * (values.dim() - 1))).expand(shape)).select(1, 0)


class PDMOracle(PDMClosed):
    """PDM-Closed reading ground truth: the upper reference of the baselines."""

    name: ClassVar[str] = "pdm-gt"
    inputs: ClassVar[frozenset[str]] = frozenset({"ground_truth"})

    def __init__(self, timing: Timing = Timing(), raster: RasterConfig = RasterConfig()):
        super().__init__(PDMConfig(threshold=None), timing, raster)
