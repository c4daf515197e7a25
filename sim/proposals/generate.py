"""`generate`: the proposals both planners score, PDM-Closed style, driven before they are scored.

    proposals = generate(frame, obstacles, previous, ProposalConfig(), timing, raster)

1. Paths: the route centreline shifted by small lateral offsets, and by one lane
   width to either side where the map shows a lane there running the same way
   (lane changes; `SensorFrame.lanes` tells it from the oncoming lane).
2. Leaders: per path and plan step, the nearest agent in the path's corridor at
   a quantile of its outcomes (`sim.proposals.leader`): no thresholding. Agents
   that cross the path hold their crossing place a little before and after
   they pass, so the IDM waits for a gap instead of following them through.
3. Speeds: IDM along each path at several target speeds behind its leader.
4. Stops and consistency: a controlled stop, an emergency stop, and the
   previous step's plan re-timed to now.
5. Driving: every reference through the simulator's tracking controller and
   bicycle (`sim.proposals.simulate`), so what is scored is what will be driven.

Proposal order (`Proposals.kinds`): the IDM grid path-major (offsets in
`ProposalConfig.path_offsets` order), fastest target first within a path; then
the controlled stop, the emergency stop, and the previous plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from core.config import Timing
from core.contracts import constant
from sim.config import RasterConfig
from sim.proposals.config import ProposalConfig
from sim.proposals.idm import follow
from sim.proposals.leader import leader_table, on_route
from sim.proposals.obstacles import Obstacles
from sim.proposals.previous import PreviousPlan
from sim.proposals.route import offset_poses, ramped_offset, to_route
from sim.proposals.simulate import Driven, Reference, drive
from sim.sensors.raster import read_map
from sim.types import SensorFrame

# Arc lengths (m) where a lane change's target lane is looked for on the map, and the offsets (m) across
# the target where the drivable area must cover it.
LANE_CHECK_S = (12.0, 20.0, 28.0)
LANE_CHECK_ACROSS = (-0.5, 0.0, 0.5)
# A target point lies on a lane when a centreline passes within LANE_MATCH m of it, running within
# LANE_MATCH_ANGLE of the target's heading: the lane beside the ego, not the oncoming one.
LANE_MATCH = 1.0
LANE_MATCH_ANGLE = math.radians(30.0)
LANE_MATCH_COS = math.cos(LANE_MATCH_ANGLE)


@dataclass(frozen=True)
class Proposals:
    """C proposals, [B, C, T] unless noted.

    Attributes:
        reference: what each proposal asks the controller to drive (box centre, ego frame).
        driven: what the ego drives following it.
        offset: lateral offset of the reference from the route, m.
        valid: [B, C] bool, the proposal exists (a lane change where the map has a lane; a previous plan).
        kinds: C labels ("idm", "stop", "emergency", "previous"), static.
    """

    reference: Reference
    driven: Driven
    offset: Tensor
    valid: Tensor
    kinds: tuple[str, ...]


def generate(
    frame: SensorFrame,
    obstacles: Obstacles,
    previous: PreviousPlan | None,
    cfg: ProposalConfig,
    timing: Timing = Timing(),
    raster: RasterConfig = RasterConfig(),
) -> Proposals:
    """The proposals for `frame` among `obstacles`, the previous plan among them when given."""
    like = frame.ego_speed
    offsets = constant(cfg.path_offsets, like)  # (P,)
    _, start, _ = to_route(frame.route, torch.zeros_like(frame.route[:, :1]))  # (B, 1) the ego's offset now
    start = start[:, 0]
    ramps = _ramps(frame, cfg, start, offsets)  # (B, P)
    hold = round(cfg.yield_gap / timing.sample_dt)
    leader = leader_table(on_route(frame, obstacles, timing.sample_dt), obstacles.prob, start, offsets, ramps,
                          cfg.leader_quantile, cfg.corridor_margin, hold)  # fmt: skip
    fractions = constant(sorted(cfg.speed_fractions, reverse=True), like)
    target = (frame.speed_limit[:, None, None] * fractions).expand(-1, offsets.shape[0], -1)  # (B, P, F)
    s, speed = follow(frame.ego_speed, target, leader, cfg, timing)  # (B, P, F, T)
    offset, slope = ramped_offset(s, start[:, None, None, None], offsets[None, :, None, None], ramps[:, :, None, None])
    xy, yaw = offset_poses(frame.route, s, offset, slope)
    B, P, F, T = s.shape
    grid = (xy.reshape(B, P * F, T, 2), yaw.reshape(B, P * F, T), speed.reshape(B, P * F, T))
    lanes = _lanes_on_map(frame, cfg, raster)[:, :, None].expand(B, P, F).reshape(B, P * F)
    stop_s, stop_speed = _stops(frame.ego_speed, cfg, timing)  # (B, 2, T), at the ego's offset
    stop_offset = start[:, None, None].expand_as(stop_s)
    stop_xy, stop_yaw = offset_poses(frame.route, stop_s, stop_offset, torch.zeros_like(stop_s))
    parts = [grid, (stop_xy, stop_yaw, stop_speed)]
    valid = [lanes, torch.ones_like(lanes[:, :2])]
    offset_parts = [offset.reshape(B, P * F, T), stop_offset]
    kinds = ("idm",) * (P * F) + ("stop", "emergency")
    if cfg.previous_plan:
        previous = previous if previous is not None else PreviousPlan.none(frame, timing)
        held = previous.retimed(frame, timing)
        _, held_offset, _ = to_route(frame.route, held.xy)
        parts.append((held.xy, held.yaw, held.speed))
        valid.append(previous.valid[:, None])
        offset_parts.append(held_offset)
        kinds += ("previous",)
    reference = Reference(*(torch.cat(columns, dim=1) for columns in zip(*parts, strict=True)))
    driven = drive(reference, frame.ego_speed, frame.ego_accel, cfg.wheelbase, timing, cfg.simulation_substeps)
    return Proposals(reference, driven, torch.cat(offset_parts, 1), torch.cat(valid, 1), kinds)


def _ramps(frame: SensorFrame, cfg: ProposalConfig, start: Tensor, offsets: Tensor) -> Tensor:
    """[B, P] arc length over which each path moves from the ego's offset `start [B]` to its own
    `offsets [P]`: a lane width's move over the distance `lane_change_time` takes at the current speed,
    smaller moves over proportionally less, never less than `offset_ramp`."""
    lane = max(cfg.lane_width, 1.0)
    move = ((offsets[None, :] - start[:, None]).abs() / lane).clamp_max(1.0)  # in lane widths
    return (frame.ego_speed[:, None] * cfg.lane_change_time * move).clamp_min(cfg.offset_ramp)


def _lanes_on_map(frame: SensorFrame, cfg: ProposalConfig, raster: RasterConfig) -> Tensor:
    """[B, P] whether each path leads somewhere drivable: nudges always; a lane change where, at every
    checked arc length, the map's lanes (`SensorFrame.lanes`) hold a lane one lane width across running
    the route's way (never the oncoming lane) and the drivable area covers it."""
    B = frame.ego_speed.shape[0]
    nudges = torch.ones(B, len(cfg.lateral_offsets), dtype=torch.bool, device=frame.ego_speed.device)
    changes = cfg.path_offsets[len(cfg.lateral_offsets) :]
    if not changes:
        return nudges
    like = frame.ego_speed
    s = constant(LANE_CHECK_S, like)[None, None, :].expand(B, len(changes), -1)  # (B, L, S)
    target, yaw = offset_poses(frame.route, s, constant(changes, like)[None, :, None].expand_as(s), torch.zeros_like(s))
    same_way = lane_running(frame, target, yaw)  # (B, L, S)
    across = constant(LANE_CHECK_ACROSS, like)
    normal = torch.stack((-torch.sin(yaw), torch.cos(yaw)), dim=-1)
    width = target[..., None, :] + normal[..., None, :] * across[:, None]  # (B, L, S, X, 2)
    drivable = read_map(frame.map[:, :1], width, raster).amin(-1) > 0.5
    return torch.cat((nudges, (same_way & drivable).all(-1)), dim=1)


def lane_running(frame: SensorFrame, xy: Tensor, yaw: Tensor) -> Tensor:
    """[B, ...] whether a lane centreline of `frame.lanes` passes within `LANE_MATCH` m of each point
    `xy [B, ..., 2]` running within `LANE_MATCH_ANGLE` of the heading `yaw [B, ...]` there."""
    B = xy.shape[0]
    ok = (frame.lanes_valid[:, :, :-1] & frame.lanes_valid[:, :, 1:]).reshape(B, 1, -1)  # (B, 1, G) segments
    a = frame.lanes[:, :, :-1].reshape(B, 1, -1, 2)
    ab = frame.lanes[:, :, 1:].reshape(B, 1, -1, 2) - a
    q = xy.reshape(B, -1, 1, 2)  # (B, Q, 1, 2)
    length_sq = (ab * ab).sum(-1).clamp_min(1e-9)
    t = (((q - a) * ab).sum(-1) / length_sq).clamp(0.0, 1.0)
    gap = (a + t[..., None] * ab - q).norm(dim=-1)  # (B, Q, G)
    way = torch.stack((torch.cos(yaw), torch.sin(yaw)), dim=-1).reshape(B, -1, 1, 2)
    aligned = (ab * way).sum(-1) > LANE_MATCH_COS * length_sq.sqrt()
    return (ok & (gap < LANE_MATCH) & aligned).any(-1).reshape(yaw.shape)


def _stops(speed: Tensor, cfg: ProposalConfig, timing: Timing) -> tuple[Tensor, Tensor]:
    """Arc lengths and speeds [B, 2, T] of braking at `stop_decel` and at `emergency_decel` to a standstill."""
    like = speed
    decel = constant((cfg.stop_decel, cfg.emergency_decel), like)[None, :, None]  # (1, 2, 1)
    t = (torch.arange(timing.horizon_steps, dtype=like.dtype, device=like.device) + 1.0) * timing.sample_dt
    v0 = speed[:, None, None]
    moving = torch.minimum(t, v0 / decel)  # time until standstill, at most t
    return v0 * moving - 0.5 * decel * moving * moving, (v0 - decel * t).clamp_min(0.0)
