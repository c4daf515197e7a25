"""The per-step metrics, in the spirit of nuPlan's closed-loop metrics.

Each returns values for the step `prev -> state` (the state after the step is
the one judged; `prev` supplies differences such as jerk). `docs/metrics.md`
explains every value, its units and where its thresholds come from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from sim import geometry
from sim.metrics.config import MetricsConfig
from sim.metrics.context import StepContext, heading
from sim.metrics.registry import StepMetric, get_metric, metric_names, register_metric
from sim.metrics.route import nearest_on_polyline
from sim.state import Behaviour, WorldState

# Collision classes: AgentKind's values, then parked/standing agents (Behaviour.STATIC).
COLLISION_CLASSES = ("vehicle", "pedestrian", "cyclist", "static")
STATIC_CLASS = 3


@register_metric
class CollisionMetric(StepMetric):
    """Contacts of the ego box with agent boxes, and whether the ego is at fault.

    Not at fault (nuPlan's STOPPED_EGO and ACTIVE_REAR collision types,
    simplified): the ego is slower than `CollisionConfig.stopped_speed`, or the
    contact is at its rear - the point of the ego box nearest the agent's centre
    lies behind the rear axle - while the agent closes in on the ego. Every
    other contact is at fault (nuPlan also exempts lateral contacts while the ego
    stays in its lane; there is no lane occupancy here, so those count).
    """

    name = "collision"
    outputs = ("contact", "contact_at_fault", "contact_class")

    def _compute(self, ctx: StepContext) -> dict[str, Tensor]:
        ego, agents = ctx.state.ego, ctx.state.agents
        contact = ctx.sweep.overlap_now & agents.valid  # (B, N)
        d = agents.xy - ctx.ego_center[:, None]  # (B, N, 2)
        along = (d * heading(ego.yaw)[:, None]).sum(-1)  # agent centre ahead of the ego centre, m
        half_length = 0.5 * ego.length[:, None]
        contact_along = torch.maximum(torch.minimum(along, half_length), -half_length)
        behind_axle = contact_along < -0.5 * ego.wheelbase[:, None]  # rear axle: wheelbase/2 behind centre
        closing = ((ctx.agent_velocity - ctx.ego_velocity[:, None]) * d).sum(-1) < 0
        ego_stopped = (ego.speed < self.config.collision.stopped_speed)[:, None]
        at_fault = contact & ~ego_stopped & ~(behind_axle & closing)
        static = agents.behaviour == int(Behaviour.STATIC)
        klass = torch.where(static, torch.full_like(agents.kind, STATIC_CLASS), agents.kind)
        return {"contact": contact, "contact_at_fault": at_fault, "contact_class": klass}


@register_metric
class TTCMetric(StepMetric):
    """Time to collision [B], s: the first projection step (0.1 s .. 3.0 s) at which the
    ego box, moving on at its speed and heading, overlaps an agent box moving on at
    the agent's; `TTCConfig.cap` when none does or the ego is stopped.

    As in nuPlan, agents already in contact and agents behind the ego (bearing
    from its rear axle beyond `behind_angle_deg`) are left out.
    """

    name = "ttc"
    outputs = ("ttc",)

    def _compute(self, ctx: StepContext) -> dict[str, Tensor]:
        cfg = self.config.ttc
        ego, agents = ctx.state.ego, ctx.state.agents
        to_agent = agents.xy - ego.xy[:, None]  # (B, N, 2) from the rear axle
        cos_bearing = (to_agent * heading(ego.yaw)[:, None]).sum(-1) / to_agent.norm(dim=-1).clamp_min(1e-9)
        behind = cos_bearing < math.cos(math.radians(cfg.behind_angle_deg))
        relevant = agents.valid & ~behind & ~ctx.sweep.overlap_now
        hit = ctx.sweep.first_hit(cfg.step, cfg.num_steps)  # (B, N)
        hit = torch.where(relevant, hit, torch.full_like(hit, float("inf")))
        ttc = hit.amin(-1).clamp_max(cfg.cap)  # (B,)
        moving = ego.speed > cfg.stopped_speed
        return {"ttc": torch.where(moving, ttc, torch.full_like(ttc, cfg.cap))}


@register_metric
class DrivableAreaMetric(StepMetric):
    """[B] bool: all four corners of the ego box on drivable cells (map raster channel 0)."""

    name = "drivable_area"
    outputs = ("drivable",)

    def _compute(self, ctx: StepContext) -> dict[str, Tensor]:
        m = ctx.state.map
        corners = geometry.box_corners(ctx.ego_center, ctx.state.ego.yaw, ctx.state.ego.length, ctx.state.ego.width)
        values = geometry.sample_raster(m.raster, m.raster_origin, m.raster_resolution, corners, 0)  # (B, 4)
        return {"drivable": (values >= self.config.drivable_threshold).all(-1)}


@register_metric
class ComfortMetric(StepMetric):
    """Raw comfort signals [B]: longitudinal acceleration (m/s^2), lateral acceleration
    speed * yaw rate (m/s^2), longitudinal jerk (m/s^3), yaw rate (rad/s) and yaw
    acceleration (rad/s^2); differences are taken over the step."""

    name = "comfort"
    outputs = ("lon_accel", "lat_accel", "lon_jerk", "yaw_rate", "yaw_accel")

    def _compute(self, ctx: StepContext) -> dict[str, Tensor]:
        now, before = ctx.state.ego, ctx.prev.ego
        return {
            "lon_accel": now.accel,
            "lat_accel": now.speed * now.yaw_rate,
            "lon_jerk": (now.accel - before.accel) / ctx.dt,
            "yaw_rate": now.yaw_rate,
            "yaw_accel": (now.yaw_rate - before.yaw_rate) / ctx.dt,
        }


@register_metric
class SpeedLimitMetric(StepMetric):
    """Speed above the route's speed limit [B], m/s (>= 0), and the limit itself."""

    name = "speed_limit"
    outputs = ("overspeed", "speed_limit")

    def _compute(self, ctx: StepContext) -> dict[str, Tensor]:
        limit = ctx.route.speed_limit
        return {"overspeed": (ctx.state.ego.speed - limit).clamp_min(0.0), "speed_limit": limit}


@register_metric
class FrozenMetric(StepMetric):
    """[B] bool: the ego stands still although its path is clear and its route goes on.

    Clear path: no valid agent within (ego half width + the agent's half extent
    across the route + `frozen_lateral_margin`) of the route centreline between
    the ego's centre and `frozen_lookahead` + stopping distance beyond its front
    bumper. Route end: the front bumper within `route_end_margin` of it.
    """

    name = "frozen"
    outputs = ("frozen", "path_clear", "route_end_reached")

    def _compute(self, ctx: StepContext) -> dict[str, Tensor]:
        cfg = self.config.progress
        ego, agents, route = ctx.state.ego, ctx.state.agents, ctx.route
        s_centre = ctx.ego_s + 0.5 * ego.wheelbase  # (B,)
        s_front = s_centre + 0.5 * ego.length
        reach = cfg.frozen_lookahead + ego.speed**2 / (2.0 * cfg.frozen_decel)
        fractions = torch.linspace(0.0, 1.0, cfg.corridor_points, device=ego.speed.device, dtype=ego.speed.dtype)
        corridor_s = s_centre[:, None] + (s_front - s_centre + reach)[:, None] * fractions  # (B, Q)
        corridor = route.points_at(corridor_s)  # (B, Q, 2)
        dist, direction = nearest_on_polyline(corridor, agents.xy)  # (B, N), (B, N, 2)
        agent_dir = heading(agents.yaw)
        cos = (direction * agent_dir).sum(-1).abs()
        sin = (direction[..., 0] * agent_dir[..., 1] - direction[..., 1] * agent_dir[..., 0]).abs()
        half_across = 0.5 * (agents.length * sin + agents.width * cos)  # (B, N)
        limit = 0.5 * ego.width[:, None] + half_across + cfg.frozen_lateral_margin
        blocked = agents.valid & (dist <= limit)
        path_clear = ~blocked.any(-1)
        end_reached = s_front >= route.length - cfg.route_end_margin
        frozen = (ego.speed < cfg.frozen_speed) & path_clear & ~end_reached
        return {"frozen": frozen, "path_clear": path_clear, "route_end_reached": end_reached}


@register_metric
class ProgressMetric(StepMetric):
    """Progress made in the step [B] (delta of `ego.progress`, m) and the route length
    ahead of the rear axle before the step [B], m (route length - arc length of the
    rear axle's projection now + the step's progress)."""

    name = "progress"
    outputs = ("progress_delta", "route_remaining_before")

    def _compute(self, ctx: StepContext) -> dict[str, Tensor]:
        delta = ctx.state.ego.progress - ctx.prev.ego.progress
        remaining = (ctx.route.length - ctx.ego_s + delta).clamp_min(0.0)
        return {"progress_delta": delta, "route_remaining_before": remaining}


class StepMetrics:
    """Several registered metrics computed on one shared context per step.

    `compute(prev, state)` returns the union of their outputs: per-episode
    values [B] and per-agent values [B, N] (the collision masks).
    """

    def __init__(self, names: Sequence[str] | None = None, config: MetricsConfig | None = None):
        self.config = config if config is not None else MetricsConfig()
        chosen = list(names) if names is not None else metric_names()
        self.metrics = tuple(get_metric(name, self.config) for name in chosen)
        keys = [k for m in self.metrics for k in m.outputs]
        if len(keys) != len(set(keys)):
            raise ValueError(f"StepMetrics: metrics {chosen} produce overlapping outputs {keys}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    def compute(self, prev: WorldState, state: WorldState) -> dict[str, Tensor]:
        ctx = StepContext(prev, state, self.config)
        values: dict[str, Tensor] = {}
        for metric in self.metrics:
            values.update(metric.evaluate(ctx))
        return values
