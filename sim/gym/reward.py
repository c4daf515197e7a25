"""Reward, termination and truncation of one step, from the simulator's own per-step metrics.

Nothing here measures the world again: the registered step metrics (`sim.metrics.StepMetrics`, the values
the closed-loop scores are built from, docs/metrics.md) are evaluated once on the step `prev -> state`
and combined:

    reward = progress * progress_delta                       route progress of the box centre, m
           - collision * at_fault_collision                  1 at the step of an at-fault contact
           - off_road * (1 - drivable)                       1 while a box corner is off the drivable area
           - overspeed * overspeed * dt                      m driven above the route's speed limit
           - comfort * comfort_violations / 5                raw comfort signals outside nuPlan's bounds

    terminated = at_fault_collision or route_end_reached     (the front bumper within 1 m of the route end)
    truncated  = not terminated and the episode has run its steps (the scenario's duration)

The comfort signals are the step's raw longitudinal and lateral acceleration, longitudinal jerk, yaw rate
and yaw acceleration against `ComfortConfig`'s bounds; the episode metric `comfortable` smooths them over
0.5 s first, the reward does not (it sees one step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core.config import require
from sim.metrics import COMFORT_SIGNALS, MetricsConfig, StepMetrics
from sim.metrics.episode import comfort_bounds
from sim.state import WorldState

# The step metrics the reward and the episode ends read (TTC is left out: nothing here uses it).
REWARD_METRICS = ("collision", "drivable_area", "progress", "frozen", "comfort", "speed_limit")


@dataclass(frozen=True)
class RewardConfig:
    """Weights of the reward's terms (see the module docstring for the formula).

    Attributes:
        progress: per m of route progress.
        collision: per at-fault collision (the episode terminates at it).
        off_road: per step with the ego box partly off the drivable area.
        overspeed: per m driven above the speed limit.
        comfort: per step with all five comfort signals outside their bounds (pro rata).
    """

    progress: float = 0.1
    collision: float = 10.0
    off_road: float = 0.1
    overspeed: float = 0.1
    comfort: float = 0.02

    def __post_init__(self) -> None:
        for name in ("progress", "collision", "off_road", "overspeed", "comfort"):
            value = getattr(self, name)
            require(isinstance(value, (int, float)) and value >= 0, "RewardConfig", name, "a weight >= 0", value)


@dataclass(frozen=True)
class StepOutcome:
    """What one step earned, per episode of a batch.

    Attributes:
        reward: [B] float.
        terminated: [B] bool, at-fault collision or route end.
        truncated: [B] bool, out of time and not terminated.
        info: [B] tensors named as in docs/gym.md: progress_delta (m), at_fault_collision, off_road,
            route_end_reached (bool), overspeed (m/s), comfort_violations (0..5).
    """

    reward: Tensor
    terminated: Tensor
    truncated: Tensor
    info: dict[str, Tensor]


class StepReward:
    """Evaluates the reward metrics on a step and combines them (built once per environment)."""

    def __init__(self, config: RewardConfig = RewardConfig(), metrics: MetricsConfig = MetricsConfig()):
        self.config = config
        self.metrics = StepMetrics(REWARD_METRICS, metrics)

    def __call__(self, prev: WorldState, state: WorldState, episode_steps: int) -> StepOutcome:
        w = self.config
        v = self.metrics.compute(prev, state)
        signals = torch.stack([v[k] for k in COMFORT_SIGNALS], dim=-1)  # (B, S)
        low, high = comfort_bounds(self.metrics.config, signals)
        comfort_violations = ((signals < low) | (signals > high)).sum(-1)  # (B,)
        at_fault = v["contact_at_fault"].any(-1)
        off_road = ~v["drivable"]
        reward = (
            w.progress * v["progress_delta"]
            - w.collision * at_fault.to(signals.dtype)
            - w.off_road * off_road.to(signals.dtype)
            - w.overspeed * v["overspeed"] * state.dt
            - w.comfort * comfort_violations.to(signals.dtype) / len(COMFORT_SIGNALS)
        )
        terminated = at_fault | v["route_end_reached"]
        truncated = (state.step >= episode_steps) & ~terminated
        info = {
            "progress_delta": v["progress_delta"],
            "at_fault_collision": at_fault,
            "off_road": off_road,
            "route_end_reached": v["route_end_reached"],
            "overspeed": v["overspeed"],
            "comfort_violations": comfort_violations,
        }
        return StepOutcome(reward=reward, terminated=terminated, truncated=truncated, info=info)
