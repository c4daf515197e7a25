"""A rule-based planner in the style of PDM-Closed (Dauner et al., 2023).

IDM proposals at several target speeds and lateral offsets from the route are
rolled out against constant-velocity forecasts of the believed objects and
scored deterministically: multipliers (no collision, drivable area) times a
weighted average (progress 5, time-to-collision 5, comfort 2). Objects are
forecast in route coordinates (arc length, lateral offset), which is exact on
straight roads and a close approximation on the gentle curves of the suites.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from sim.config import ConfigError, RasterConfig, Timing
from sim.policies.base import Observation, Overlay, PolicyOutput
from sim.policies.idm import (
    EGO_HALF_LENGTH,
    EGO_HALF_WIDTH,
    IDMConfig,
    ego_idm_accel,
    leader_in_corridor,
    select_objects,
)
from sim.policies.route import RouteObjects, objects_on_route, route_points
from sim.types import SensorFrame


@dataclass(frozen=True)
class PDMConfig:
    """Proposal grid and scoring.

    Attributes:
        speed_fractions: IDM target speeds as fractions of the speed limit.
        lateral_offsets: offsets from the route centreline, m (left > 0); the
            first one is preferred on ties, so keep 0 first.
        offset_ramp: arc length over which a lateral offset is blended in, m.
        ttc_threshold: proposals whose time to collision drops below this lose
            the TTC term, s (nuPlan's 0.95 s).
        idm: IDM parameters of the proposals (and the belief threshold).
    """

    speed_fractions: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)
    lateral_offsets: tuple[float, ...] = (0.0, -1.0, 1.0)
    offset_ramp: float = 12.0
    ttc_threshold: float = 0.95
    idm: IDMConfig = IDMConfig()

    def __post_init__(self) -> None:
        if not self.speed_fractions or min(self.speed_fractions) <= 0:
            raise ConfigError(f"PDMConfig.speed_fractions: expected positive fractions, got {self.speed_fractions}")
        if not self.lateral_offsets:
            raise ConfigError("PDMConfig.lateral_offsets: expected at least one offset")
        if self.offset_ramp <= 0:
            raise ConfigError(f"PDMConfig.offset_ramp: expected > 0 m, got {self.offset_ramp}")


def _offset_at(s: Tensor, offset: Tensor, ramp: float) -> Tensor:
    """Lateral offset of a proposal at arc length s: smoothstep from 0 to `offset` over `ramp` m."""
    x = (s / ramp).clamp(0.0, 1.0)
    return offset * x * x * (3.0 - 2.0 * x)


def _drivable(frame: SensorFrame, xy: Tensor, raster: RasterConfig) -> Tensor:
    """Drivable-area flag of ego-frame points `xy [B, ..., 2]` from the frame's map raster."""
    B = xy.shape[0]
    H = W = raster.size
    row = torch.floor(raster.ego_row_fraction * H - xy[..., 0] / raster.resolution).long()
    col = torch.floor(W / 2 - xy[..., 1] / raster.resolution).long()
    inside = (row >= 0) & (row < H) & (col >= 0) & (col < W)
    flat = frame.map[:, 0].reshape(B, H * W)
    idx = (row.clamp(0, H - 1) * W + col.clamp(0, W - 1)).reshape(B, -1)
    value = torch.gather(flat, 1, idx).reshape(row.shape)
    # Points off the raster are beyond what the sensor maps; do not penalise them.
    return torch.where(inside, value > 0.5, torch.ones_like(inside))


class PDMClosed:
    """Deterministic proposal scoring on constant-velocity forecasts."""

    name: ClassVar[str] = "pdm"
    inputs: ClassVar[frozenset[str]] = frozenset({"detections"})

    def __init__(self, config: PDMConfig = PDMConfig(), timing: Timing = Timing(), raster: RasterConfig = RasterConfig()):
        self.config = config
        self.timing = timing
        self.raster = raster

    def initial_state(self, batch: int, device: Any) -> None:
        return None

    def _proposals(self, frame: SensorFrame) -> tuple[Tensor, Tensor]:
        """Target speeds and offsets, [B, K] each, offset-major so offset 0 comes first."""
        fr = torch.tensor(self.config.speed_fractions, dtype=frame.ego_speed.dtype, device=frame.ego_speed.device)
        off = torch.tensor(self.config.lateral_offsets, dtype=fr.dtype, device=fr.device)
        target = frame.speed_limit[:, None, None] * fr[None, None, :]  # (B, 1, F)
        offsets = off[None, :, None].expand(frame.ego_speed.shape[0], -1, fr.numel())  # (B, O, F)
        target = target.expand_as(offsets)
        # Within an offset, try the fastest speed first so ties favour progress.
        return target.flip(-1).reshape(target.shape[0], -1), offsets.reshape(offsets.shape[0], -1)

    def _rollout(self, frame: SensorFrame, objs: RouteObjects, target: Tensor, offset: Tensor):
        """IDM along each proposal; returns arc lengths, speeds, accels [B, K, S] and min TTC [B, K]."""
        cfg = self.config.idm
        dt = self.timing.sample_dt / cfg.substeps
        s = torch.zeros_like(target)
        v = frame.ego_speed[:, None].expand_as(target)
        ttc = torch.full_like(target, 1e3)
        collided = torch.zeros_like(target, dtype=torch.bool)
        s_hist, v_hist, a_hist = [], [], []
        for step in range(self.timing.horizon_steps * cfg.substeps):
            t = step * dt
            obj_s = (objs.s + objs.v_s * t)[:, None, :]  # (B, 1, M)
            obj_lat = (objs.lat + objs.v_lat * t)[:, None, :]
            off_here = _offset_at(s, offset, self.config.offset_ramp)
            gap, lead_v = leader_in_corridor(s, obj_s, obj_lat, off_here, _expand(objs), cfg.corridor_margin)
            a = ego_idm_accel(cfg, v, target, gap, v - lead_v)
            closing = (v - lead_v).clamp_min(1e-3)
            ttc = torch.minimum(ttc, torch.where(v - lead_v > 0, t + gap / closing, torch.full_like(gap, 1e3)))
            collided = collided | (gap <= 0.05)
            v_next = (v + a * dt).clamp_min(0.0)
            s = s + 0.5 * (v + v_next) * dt
            v = v_next
            s_hist.append(s)
            v_hist.append(v)
            a_hist.append(a)
        return torch.stack(s_hist, -1), torch.stack(v_hist, -1), torch.stack(a_hist, -1), ttc, collided

    def act(self, state: None, obs: Observation) -> tuple[PolicyOutput, None]:
        cfg, frame = self.config, obs.frame
        objs = objects_on_route(frame, select_objects(obs, cfg.idm.threshold), cfg.idm.threshold)
        target, offset = self._proposals(frame)
        s, v, a, ttc, collided = self._rollout(frame, objs, target, offset)
        lateral = _offset_at(s, offset.unsqueeze(-1), cfg.offset_ramp)
        xy = route_points(frame, s, lateral)  # (B, K, S, 2)
        drivable = _corners_drivable(frame, xy, self.raster)
        score = self._score(s, a, ttc, collided, drivable)
        best = score.argmax(-1)  # first maximum: offset 0, fastest speed on ties
        every = self.config.idm.substeps
        samples = xy[:, :, every - 1 :: every]  # (B, K, T, 2)
        pick = best[:, None, None, None].expand(-1, 1, *samples.shape[2:])
        trajectory = torch.gather(samples, 1, pick).squeeze(1)
        speeds = torch.gather(v[:, :, every - 1 :: every], 1, best[:, None, None].expand(-1, 1, samples.shape[2])).squeeze(1)
        overlay = Overlay(candidates=samples, candidate_weights=score.clamp(0.0, 1.0))
        return PolicyOutput(trajectory=trajectory, speeds=speeds, overlay=overlay), None

    def _score(self, s: Tensor, a: Tensor, ttc: Tensor, collided: Tensor, drivable: Tensor) -> Tensor:
        """PDM-style score [B, K] in [0, 1]."""
        safe = ~collided & drivable
        progress = s[..., -1]
        best_progress = torch.where(safe, progress, torch.zeros_like(progress)).amax(-1, keepdim=True)
        progress_term = (progress / best_progress.clamp_min(1.0)).clamp(0.0, 1.0)
        ttc_term = (ttc >= self.config.ttc_threshold).float()
        comfort_term = ((a >= -4.05) & (a <= 2.40)).all(-1).float()
        weighted = (5 * progress_term + 5 * ttc_term + 2 * comfort_term) / 12.0
        return safe.float() * weighted


def _expand(objs: RouteObjects) -> RouteObjects:
    """Insert the proposal axis so object fields broadcast as [B, 1, M]."""
    return RouteObjects(*(getattr(objs, f)[:, None, :] for f in RouteObjects.__dataclass_fields__))


def _corners_drivable(frame: SensorFrame, xy: Tensor, raster: RasterConfig) -> Tensor:
    """Whether the ego's side edges stay on drivable cells along every proposal -> [B, K]."""
    heading = xy[..., 1:, :] - xy[..., :-1, :]
    heading = torch.cat((heading[..., :1, :], heading), dim=-2)
    norm = heading.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    unit = heading / norm
    left = torch.stack((-unit[..., 1], unit[..., 0]), dim=-1)
    points = torch.stack(
        (xy + left * EGO_HALF_WIDTH + unit * EGO_HALF_LENGTH, xy - left * EGO_HALF_WIDTH + unit * EGO_HALF_LENGTH),
        dim=-2,
    )  # (B, K, S, 2, 2)
    return _drivable(frame, points, raster).flatten(2).all(-1)


class PDMOracle(PDMClosed):
    """PDM-Closed reading ground truth: the upper reference of the baselines."""

    name: ClassVar[str] = "pdm-gt"
    inputs: ClassVar[frozenset[str]] = frozenset({"ground_truth"})

    def __init__(self, timing: Timing = Timing(), raster: RasterConfig = RasterConfig()):
        super().__init__(PDMConfig(idm=IDMConfig(threshold=None)), timing, raster)
