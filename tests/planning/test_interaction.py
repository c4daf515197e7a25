"""The interaction costs count what the simulator counts as the ego's fault: a car overtaking in the next lane
that a merging ego would sideswipe costs a collision, a follower closing in on the ego's rear does not."""

from __future__ import annotations

import torch

from planning.agents import AgentFutures
from planning.config import CostWeights, PlannerConfig
from planning.interaction import interaction_costs, not_rear_weight
from sim.proposals import Driven

DT, STEPS = 0.5, 8


def ego_drive(speed: float, lateral_speed: float = 0.0) -> Driven:
    """One proposal: the ego from the origin along +x at `speed`, drifting left at `lateral_speed`, m/s."""
    t = (torch.arange(STEPS) + 1.0) * DT
    xy = torch.stack((speed * t, lateral_speed * t), dim=-1)[None, None]
    yaw = torch.full((1, 1, STEPS), float(torch.atan2(torch.tensor(lateral_speed), torch.tensor(speed))))
    zeros = torch.zeros(1, 1, STEPS)
    return Driven(xy=xy, yaw=yaw, speed=torch.full((1, 1, STEPS), speed), accel=zeros, jerk=zeros, yaw_rate=zeros)


def car(x: float, y: float, speed: float) -> AgentFutures:
    """One car from (x, y) along +x at `speed`, one outcome, 0.2 m std."""
    t = (torch.arange(STEPS) + 1.0) * DT
    means = torch.stack((x + speed * t, torch.full_like(t, y)), dim=-1)[None, None, None]
    heading = torch.tensor([1.0, 0.0]).expand(1, 1, 1, STEPS, 2)
    return AgentFutures(means=means, cov=0.04 * torch.eye(2).expand(1, 1, 1, STEPS, 2, 2), heading=heading,
                        heading_trust=torch.ones(1, 1, 1, STEPS), log_prob=torch.zeros(1, 1, 1),
                        existence=torch.ones(1, 1), size=torch.tensor([[[4.5, 1.9]]]))  # fmt: skip


def collision_cost(driven: Driven, agents: AgentFutures) -> float:
    """The collision term alone (the other weights zeroed)."""
    cfg = PlannerConfig(weights=CostWeights(headway=0.0, yielding=0.0))
    return float(interaction_costs(driven, agents, cfg, DT)[0, 0, 0, 0])


def test_a_car_overtaking_in_the_next_lane_costs_a_merging_ego_a_collision():
    merging = ego_drive(speed=5.0, lateral_speed=1.0)  # from the ramp into the lane at y = 3.5 m
    overtaking = car(x=-10.0, y=3.5, speed=12.0)
    assert collision_cost(merging, overtaking) > 0.5
    assert collision_cost(ego_drive(speed=5.0), overtaking) < 0.01  # staying on the ramp avoids it


def test_a_follower_closing_in_on_the_rear_costs_nothing():
    follower = car(x=-10.0, y=0.0, speed=12.0)  # rear-ends an ego at 5 m/s within the horizon
    assert collision_cost(ego_drive(speed=5.0), follower) < 0.05
    leader = car(x=12.0, y=0.0, speed=0.0)  # the same contact at the ego's front is its fault
    assert collision_cost(ego_drive(speed=5.0), leader) > 0.5


def test_not_rear_weight_switches_at_the_rear_axle():
    ego_xy, heading = torch.zeros(1, 1, 1, 1, 1, 2), torch.tensor([1.0, 0.0]).expand(1, 1, 1, 1, 1, 2)
    along = torch.tensor([-5.0, -1.4, 0.0, 3.0])
    means = torch.stack((along, torch.zeros(4)), dim=-1).reshape(1, 1, 4, 1, 1, 2)
    weight = not_rear_weight(ego_xy, heading, means).flatten()
    assert weight[0] < 0.01 and abs(float(weight[1]) - 0.5) < 1e-6 and weight[2] > 0.9 and weight[3] > 0.99
