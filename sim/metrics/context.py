"""What several step metrics share about one step, each part computed once on first use."""

from __future__ import annotations

from functools import cached_property

import torch
from torch import Tensor

from sim import geometry
from sim.metrics.boxes import BoxSweep, sweep_boxes
from sim.metrics.config import MetricsConfig
from sim.metrics.route import Route
from sim.state import WorldState


def check_step_pair(prev: WorldState, state: WorldState) -> None:
    """Raise ValueError unless `prev -> state` is one step of the same batch."""
    if prev.batch_size != state.batch_size or prev.num_agents != state.num_agents:
        raise ValueError(
            f"metrics: prev and state must share batch and agent slots, got "
            f"[{prev.batch_size}, {prev.num_agents}] and [{state.batch_size}, {state.num_agents}]"
        )
    if prev.dt != state.dt or not state.dt > 0:
        raise ValueError(f"metrics: prev.dt and state.dt must be equal and > 0, got {prev.dt} and {state.dt}")


def heading(yaw: Tensor) -> Tensor:
    """Unit vectors [..., 2] along `yaw [...]`."""
    return torch.stack((torch.cos(yaw), torch.sin(yaw)), dim=-1)


class StepContext:
    """The step `prev -> state` and the quantities derived from it that metrics share."""

    def __init__(self, prev: WorldState, state: WorldState, config: MetricsConfig):
        check_step_pair(prev, state)
        self.prev = prev
        self.state = state
        self.config = config
        self.dt = state.dt

    @cached_property
    def ego_center(self) -> Tensor:
        """[B, 2] centre of the ego box, m."""
        return geometry.ego_center(self.state.ego)

    @cached_property
    def ego_velocity(self) -> Tensor:
        """[B, 2] m/s."""
        return heading(self.state.ego.yaw) * self.state.ego.speed[:, None]

    @cached_property
    def agent_velocity(self) -> Tensor:
        """[B, N, 2] m/s."""
        a = self.state.agents
        return heading(a.yaw) * a.speed[..., None]

    @cached_property
    def sweep(self) -> BoxSweep:
        """Constant-velocity overlap intervals of the ego box with every agent box."""
        ego, a = self.state.ego, self.state.agents
        return sweep_boxes(
            self.ego_center,
            ego.yaw,
            0.5 * torch.stack((ego.length, ego.width), -1),
            self.ego_velocity,
            a.xy,
            a.yaw,
            0.5 * torch.stack((a.length, a.width), -1),
            self.agent_velocity,
        )

    @cached_property
    def route(self) -> Route:
        return Route.of(self.state.map, self.state.ego.route)

    @cached_property
    def ego_s(self) -> Tensor:
        """[B] arc length of the ego's rear axle projected on its route, m."""
        return self.route.project(self.state.ego.xy)
