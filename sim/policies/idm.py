"""The plain baseline: follow the route at the speed IDM allows behind the nearest object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from core.config import ConfigError, Timing
from sim.dynamics.driver import DEFAULT_IDM, Driver, idm_accel
from sim.ego import EGO_HALF_LENGTH, EGO_HALF_WIDTH
from sim.policies.base import Observation, Overlay, PolicyOutput
from sim.policies.route import RouteObjects, objects_on_route
from sim.proposals.config import NO_LEADER_GAP
from sim.proposals.route import route_points
from sim.types import ObjectList


@dataclass(frozen=True)
class IDMConfig:
    """IDM parameters for the ego baselines.

    Attributes:
        time_headway: T, s.
        min_gap: s0, m.
        max_accel: a, m/s^2.
        comfort_decel: b, m/s^2.
        corridor_margin: extra lateral clearance that makes an object a leader, m.
        substeps: IDM integration steps per plan sample.
        threshold: existence score at which a detection is believed (None: ground truth).
    """

    time_headway: float = 1.5
    min_gap: float = 2.5
    max_accel: float = 1.5
    comfort_decel: float = 2.5
    corridor_margin: float = 0.5
    substeps: int = 4
    threshold: float | None = 0.5

    def __post_init__(self) -> None:
        for name in ("time_headway", "min_gap", "max_accel", "comfort_decel"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"IDMConfig.{name}: expected > 0, got {getattr(self, name)!r}")
        if self.substeps < 1:
            raise ConfigError(f"IDMConfig.substeps: expected >= 1, got {self.substeps!r}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"IDMConfig.threshold: expected in [0, 1] or None, got {self.threshold!r}")


def ego_idm_accel(cfg: IDMConfig, speed: Tensor, target_speed: Tensor, gap: Tensor, closing: Tensor) -> Tensor:
    """The simulator's IDM (`sim.dynamics.driver.idm_accel`) with the ego's parameters."""
    const = lambda value: torch.full_like(speed, value)  # noqa: E731
    driver = Driver(
        desired_speed=target_speed.expand_as(speed),
        time_headway=const(cfg.time_headway),
        min_gap=const(cfg.min_gap),
        max_accel=const(cfg.max_accel),
        comfort_decel=const(cfg.comfort_decel),
    )
    return idm_accel(driver, speed, gap, closing, gap < NO_LEADER_GAP, DEFAULT_IDM)


def select_objects(obs: Observation, threshold: float | None) -> ObjectList:
    """Ground truth when the policy is an oracle (threshold None), else noisy detections."""
    objects = obs.ground_truth if threshold is None else obs.detections
    if objects is None:
        raise ValueError("policy input missing: the runner did not provide the objects this policy reads")
    return objects


def leader_in_corridor(
    ego_s: Tensor, obj_s: Tensor, obj_lat: Tensor, offset: Tensor, objs: RouteObjects, margin: float
) -> tuple[Tensor, Tensor]:
    """Bumper gap and along-route speed of the nearest object ahead in the corridor.

    Shapes broadcast: `ego_s [...]`, `obj_s, obj_lat [..., M]`, `offset [...]` (the
    lateral offset of the ego's path from the route). No leader -> gap NO_LEADER_GAP.
    """
    in_lane = (obj_lat - offset.unsqueeze(-1)).abs() < objs.half_width + EGO_HALF_WIDTH + margin
    gap = obj_s - ego_s.unsqueeze(-1) - objs.half_length - EGO_HALF_LENGTH
    ahead = obj_s + objs.half_length > ego_s.unsqueeze(-1)
    candidate = objs.use & in_lane & ahead
    gap = torch.where(candidate, gap, torch.full_like(gap, NO_LEADER_GAP))
    best, idx = gap.min(-1)
    speed = torch.gather(objs.v_s.expand_as(gap), -1, idx.unsqueeze(-1)).squeeze(-1)
    return best.clamp_min(0.0), speed.clamp_min(0.0)


class IDMPolicy:
    """Follows the route centreline with IDM behind the nearest believed object."""

    name: ClassVar[str] = "idm"
    inputs: ClassVar[frozenset[str]] = frozenset({"detections"})

    def __init__(self, config: IDMConfig = IDMConfig(), timing: Timing = Timing()):
        self.config = config
        self.timing = timing

    def initial_state(self, batch: int, device: Any) -> None:
        return None

    def act(self, state: None, obs: Observation) -> tuple[PolicyOutput, None]:
        cfg, frame = self.config, obs.frame
        objs = objects_on_route(frame, select_objects(obs, cfg.threshold), cfg.threshold)
        B = frame.ego_speed.shape[0]
        zeros = torch.zeros(B, dtype=frame.ego_speed.dtype, device=frame.ego_speed.device)
        s, v = zeros, frame.ego_speed
        dt = self.timing.sample_dt / cfg.substeps
        positions, speeds = [], []
        for step in range(self.timing.horizon_steps * cfg.substeps):
            t = step * dt
            obj_s = objs.s + objs.v_s * t  # constant-velocity objects along the route
            gap, lead_v = leader_in_corridor(s, obj_s, objs.lat, zeros, objs, cfg.corridor_margin)
            a = ego_idm_accel(cfg, v, frame.speed_limit, gap, v - lead_v)
            v_next = (v + a * dt).clamp_min(0.0)
            s = s + 0.5 * (v + v_next) * dt
            v = v_next
            if (step + 1) % cfg.substeps == 0:
                positions.append(s)
                speeds.append(v)
        s_plan = torch.stack(positions, dim=-1)  # (B, T)
        trajectory = route_points(frame, s_plan)
        overlay = Overlay(candidates=trajectory.unsqueeze(1), candidate_weights=torch.ones(B, 1))
        return PolicyOutput(trajectory=trajectory, speeds=torch.stack(speeds, -1), overlay=overlay), None


class IDMOracle(IDMPolicy):
    """The IDM follower reading ground truth: an upper reference, not a competitor."""

    name: ClassVar[str] = "idm-gt"
    inputs: ClassVar[frozenset[str]] = frozenset({"ground_truth"})

    def __init__(self, config: IDMConfig | None = None, timing: Timing = Timing()):
        super().__init__(config or IDMConfig(threshold=None), timing)
