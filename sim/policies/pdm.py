"""A rule-based planner in the style of PDM-Closed (Dauner et al., 2023).

IDM proposals at several target speeds (a stop among them) and lateral offsets
from the route are rolled out against constant-velocity forecasts of the
believed objects and scored deterministically, as PDM-Closed scores them:
multipliers (no at-fault collision, drivable area) times a weighted average of
progress (5), time to collision (5) and comfort (2). Forecasts move objects in
the ego frame; at every substep they are projected onto the route to find the
IDM leader, so crossing traffic becomes a leader when it enters the ego's path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from sim.config import ConfigError, RasterConfig, Timing
from sim.geometry import obb_overlap, plan_heading
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
from sim.types import ObjectList, SensorFrame

COMFORT_ACCEL = (-4.05, 2.40)  # m/s^2, nuPlan's longitudinal comfort bounds


@dataclass(frozen=True)
class PDMConfig:
    """Proposal grid and scoring.

    Attributes:
        speed_fractions: IDM target speeds as fractions of the speed limit; 0 is
            a controlled stop, the proposal left when every other one collides.
        lateral_offsets: offsets from the route centreline, m (left > 0); the
            first one is preferred on ties, so keep 0 first.
        offset_ramp: arc length over which a lateral offset is blended in, m.
        ttc_threshold: a proposal keeps the TTC term only if the ego's box,
            stretched ahead by this many seconds at its speed, meets nothing, s.
        check_every: substeps between collision checks.
        idm: IDM parameters of the proposals (and the belief threshold).
    """

    speed_fractions: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    lateral_offsets: tuple[float, ...] = (0.0, -1.0, 1.0)
    offset_ramp: float = 12.0
    ttc_threshold: float = 0.95
    check_every: int = 2
    idm: IDMConfig = IDMConfig()

    def __post_init__(self) -> None:
        if not self.speed_fractions or min(self.speed_fractions) < 0:
            raise ConfigError(f"PDMConfig.speed_fractions: expected fractions >= 0, got {self.speed_fractions}")
        if not self.lateral_offsets:
            raise ConfigError("PDMConfig.lateral_offsets: expected at least one offset")
        if self.offset_ramp <= 0:
            raise ConfigError(f"PDMConfig.offset_ramp: expected > 0 m, got {self.offset_ramp}")
        if self.check_every < 1:
            raise ConfigError(f"PDMConfig.check_every: expected >= 1, got {self.check_every}")


@dataclass(frozen=True)
class Rollout:
    """IDM rollouts of K proposals at S substeps: arc length, lateral offset, speed,
    acceleration [B, K, S] and ego-frame positions [B, K, S, 2]."""

    s: Tensor
    lateral: Tensor
    v: Tensor
    a: Tensor
    xy: Tensor


def _offset_at(s: Tensor, offset: Tensor, ramp: float) -> Tensor:
    """Lateral offset of a proposal at arc length s: smoothstep from 0 to `offset` over `ramp` m."""
    x = (s / ramp).clamp(0.0, 1.0)
    return offset * x * x * (3.0 - 2.0 * x)


def _expand(objs: RouteObjects) -> RouteObjects:
    """Insert the proposal axis so object fields broadcast as [B, 1, M]."""
    return RouteObjects(*(getattr(objs, f)[:, None, :] for f in RouteObjects.__dataclass_fields__))


class PDMClosed:
    """Deterministic proposal scoring on constant-velocity forecasts."""

    name: ClassVar[str] = "pdm"
    inputs: ClassVar[frozenset[str]] = frozenset({"detections"})

    def __init__(
        self, config: PDMConfig = PDMConfig(), timing: Timing = Timing(), raster: RasterConfig = RasterConfig()
    ):
        self.config = config
        self.timing = timing
        self.raster = raster

    def initial_state(self, batch: int, device: Any) -> None:
        return None

    def act(self, state: None, obs: Observation) -> tuple[PolicyOutput, None]:
        cfg, frame = self.config, obs.frame
        objects = select_objects(obs, cfg.idm.threshold)
        target, offset = self._proposals(frame)
        roll = self._rollout(frame, objects, target, offset)
        score = self._score(frame, objects, roll)
        best = score.argmax(-1)  # first maximum: offset 0, fastest speed on ties
        every = cfg.idm.substeps
        samples = roll.xy[:, :, every - 1 :: every]  # (B, K, T, 2)
        speeds = roll.v[:, :, every - 1 :: every]  # (B, K, T)
        T = samples.shape[2]
        trajectory = torch.gather(samples, 1, best[:, None, None, None].expand(-1, 1, T, 2)).squeeze(1)
        speed = torch.gather(speeds, 1, best[:, None, None].expand(-1, 1, T)).squeeze(1)
        overlay = Overlay(candidates=samples, candidate_weights=score.clamp(0.0, 1.0))
        return PolicyOutput(trajectory=trajectory, speeds=speed, overlay=overlay), None

    def _proposals(self, frame: SensorFrame) -> tuple[Tensor, Tensor]:
        """Target speeds and offsets [B, K], offset-major, fastest first within an offset."""
        like = {"dtype": frame.ego_speed.dtype, "device": frame.ego_speed.device}
        fractions = torch.tensor(sorted(self.config.speed_fractions, reverse=True), **like)
        offsets = torch.tensor(self.config.lateral_offsets, **like)
        B = frame.ego_speed.shape[0]
        target = frame.speed_limit[:, None, None] * fractions[None, None, :]  # (B, 1, F)
        grid = offsets[None, :, None].expand(B, -1, fractions.numel())  # (B, O, F)
        return target.expand_as(grid).reshape(B, -1), grid.reshape(B, -1)

    def _rollout(self, frame: SensorFrame, objects: ObjectList, target: Tensor, offset: Tensor) -> Rollout:
        cfg = self.config.idm
        dt = self.timing.sample_dt / cfg.substeps
        s = torch.zeros_like(target)
        v = frame.ego_speed[:, None].expand_as(target)
        history: list[tuple[Tensor, Tensor, Tensor]] = []
        for k in range(self.timing.horizon_steps * cfg.substeps):
            objs = _expand(objects_on_route(frame, objects, cfg.threshold, time=k * dt))  # (B, 1, M)
            lateral = _offset_at(s, offset, self.config.offset_ramp)
            gap, lead_v = leader_in_corridor(s, objs.s, objs.lat, lateral, objs, cfg.corridor_margin)
            a = ego_idm_accel(cfg, v, target, gap, v - lead_v)
            v_next = (v + a * dt).clamp_min(0.0)
            s = s + 0.5 * (v + v_next) * dt
            v = v_next
            history.append((s, v, a))
        s_all, v_all, a_all = (torch.stack(x, dim=-1) for x in zip(*history, strict=True))
        lateral = _offset_at(s_all, offset.unsqueeze(-1), self.config.offset_ramp)
        return Rollout(s=s_all, lateral=lateral, v=v_all, a=a_all, xy=route_points(frame, s_all, lateral))

    def _score(self, frame: SensorFrame, objects: ObjectList, roll: Rollout) -> Tensor:
        """PDM-style score [B, K]: safe proposals in [0, 1]; unsafe ones below 0,
        ranked by how late they collide (so the least bad wins when none is safe)."""
        cfg = self.config
        check = slice(cfg.check_every - 1, None, cfg.check_every)
        hit_time, stretched_hit = self._collisions(objects, roll, check)
        horizon = self.timing.horizon_s
        collides = hit_time < horizon
        drivable = _stays_drivable(frame, roll.xy, self.raster)
        safe = ~collides & drivable
        progress = roll.s[..., -1]
        best = torch.where(safe, progress, torch.zeros_like(progress)).amax(-1, keepdim=True)
        progress_term = (progress / best.clamp_min(1.0)).clamp(0.0, 1.0)
        ttc_term = (~stretched_hit).float()
        comfort = ((roll.a >= COMFORT_ACCEL[0]) & (roll.a <= COMFORT_ACCEL[1])).all(-1).float()
        weighted = (5 * progress_term + 5 * ttc_term + 2 * comfort) / 12.0
        fallback = -1.0 + 0.5 * (hit_time / horizon).clamp(0.0, 1.0) + 0.25 * drivable.float()
        return torch.where(safe, weighted, fallback)

    def _collisions(self, objects: ObjectList, roll: Rollout, check: slice) -> tuple[Tensor, Tensor]:
        """First time [B, K] the ego's box meets a forecast object box (inf when never),
        and whether the TTC-stretched box meets one at any check."""
        cfg = self.config
        dt = self.timing.sample_dt / cfg.idm.substeps
        xy, v = roll.xy[:, :, check], roll.v[:, :, check]  # (B, K, S2, 2), (B, K, S2)
        times = (torch.arange(roll.xy.shape[2], dtype=xy.dtype, device=xy.device)[check] + 1) * dt  # (S2,)
        heading = plan_heading(roll.xy)[:, :, check]  # (B, K, S2)
        obj_xy, believed = _forecast(objects, times, cfg.idm.threshold)  # (B, 1, S2, M, 2), (B, 1, S2, M)
        obj = (obj_xy, objects.yaw[:, None, None], objects.length[:, None, None], objects.width[:, None, None])
        ego_len = torch.full_like(v, 2 * EGO_HALF_LENGTH).unsqueeze(-1)  # (B, K, S2, 1)
        ego_wid = torch.full_like(ego_len, 2 * EGO_HALF_WIDTH)
        yaw = heading.unsqueeze(-1)
        hit = obb_overlap(xy.unsqueeze(-2), yaw, ego_len, ego_wid, *obj) & believed  # (B, K, S2, M)
        stretch = (v * cfg.ttc_threshold).unsqueeze(-1)  # (B, K, S2, 1)
        forward = torch.stack((torch.cos(heading), torch.sin(heading)), dim=-1)
        ahead = (xy + forward * (0.5 * stretch)).unsqueeze(-2)
        stretched = (obb_overlap(ahead, yaw, ego_len + stretch, ego_wid, *obj) & believed).flatten(2).any(-1)
        never = torch.full_like(v, float("inf"))
        first = torch.where(hit.any(-1), times.expand_as(v), never)
        return first.amin(-1), stretched


def _forecast(objects: ObjectList, times: Tensor, threshold: float | None) -> tuple[Tensor, Tensor]:
    """Constant-velocity object centres at `times [S]` -> [B, 1, S, M, 2] and belief mask
    [B, 1, S, M]. Objects starting behind the ego are left out: a collision they
    cause from behind is not the ego's fault."""
    xy = objects.xy[:, None] + objects.velocity[:, None] * times[None, :, None, None]  # (B, S, M, 2)
    believed = objects.valid if threshold is None else objects.valid & (objects.score >= threshold)
    ahead = objects.xy[..., 0] + 0.5 * objects.length > -EGO_HALF_LENGTH
    mask = (believed & ahead)[:, None, None].expand(-1, 1, times.shape[0], -1)
    return xy[:, None], mask


def _stays_drivable(frame: SensorFrame, xy: Tensor, raster: RasterConfig) -> Tensor:
    """Whether the front corners of the ego stay on drivable cells along every proposal -> [B, K]."""
    heading = plan_heading(xy)
    forward = torch.stack((torch.cos(heading), torch.sin(heading)), dim=-1)
    left = torch.stack((-forward[..., 1], forward[..., 0]), dim=-1)
    front = xy + forward * EGO_HALF_LENGTH
    corners = torch.stack((front + left * EGO_HALF_WIDTH, front - left * EGO_HALF_WIDTH), dim=-2)  # (B, K, S, 2, 2)
    return _drivable(frame, corners, raster).flatten(2).all(-1)


def _drivable(frame: SensorFrame, xy: Tensor, raster: RasterConfig) -> Tensor:
    """Drivable-area flag of ego-frame points `xy [B, ..., 2]` from the frame's map raster."""
    B = xy.shape[0]
    H = W = raster.size
    if tuple(frame.map.shape[-2:]) != (H, W):
        raise ValueError(f"SensorFrame.map: {tuple(frame.map.shape[-2:])} cells, but the PDM policy was built for a "
                         f"raster of {raster.size} cells (make_policy(..., raster=...))")  # fmt: skip
    row = torch.floor(raster.ego_row_fraction * H - xy[..., 0] / raster.resolution).long()
    col = torch.floor(W / 2 - xy[..., 1] / raster.resolution).long()
    inside = (row >= 0) & (row < H) & (col >= 0) & (col < W)
    flat = frame.map[:, 0].reshape(B, H * W)
    idx = (row.clamp(0, H - 1) * W + col.clamp(0, W - 1)).reshape(B, -1)
    value = torch.gather(flat, 1, idx).reshape(row.shape)
    # Points off the raster are beyond what the sensor maps; do not penalise them.
    return torch.where(inside, value > 0.5, torch.ones_like(inside))


class PDMOracle(PDMClosed):
    """PDM-Closed reading ground truth: the upper reference of the baselines."""

    name: ClassVar[str] = "pdm-gt"
    inputs: ClassVar[frozenset[str]] = frozenset({"ground_truth"})

    def __init__(self, timing: Timing = Timing(), raster: RasterConfig = RasterConfig()):
        super().__init__(PDMConfig(idm=IDMConfig(threshold=None)), timing, raster)
