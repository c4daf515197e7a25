"""Lane changes with MOBIL (Kesting, Treiber & Helbing 2007), batched over all agents.

Every `decision_period` an IDM agent with `politeness >= 0` and no cooldown
looks at the neighbouring path on one side (left and right alternate between
decisions, per episode, so two cars never merge into one gap from both sides
at once). It changes lane when

    a~_self - a_self + p * ((a~_new - a_new) + (a~_old - a_old)) > threshold

(a~ after the change; "new"/"old" the followers in the target/current lane),
neither it nor the new follower would brake harder than `safe_decel`, and
both gaps are positive. On other steps nothing is searched at all, which keeps
the per-step cost low; the decisions are the same either way.

A change switches `path` to the neighbour and maps `s` through the shared point
index (neighbouring lanes are resampled so that point i lies on the same
cross-section); `d` becomes the agent's offset from the new lane, so its
position does not jump, and then settles to 0 (`idm.settle_offset`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sim.dynamics import lanes
from sim.dynamics.driver import Driver, IdmSettings, agent_drivers, idm_accel, speed_along
from sim.dynamics.neighbours import Found, Neighbour, Obstacles
from sim.state import WorldState

# The ego, when it is the follower an agent would cut in front of, is modelled
# as an IDM driver with these parameters (desired speed: its route's limit).
EGO_TIME_HEADWAY = 1.0  # s
EGO_MIN_GAP = 2.0  # m
EGO_MAX_ACCEL = 1.5  # m/s^2
EGO_COMFORT_DECEL = 2.0  # m/s^2


@dataclass(frozen=True)
class LaneOptions:
    """This step's candidate lane per agent. All fields [B, N].

    Attributes:
        target: path index of the neighbouring lane on this decision's side (-1: none).
        eligible: bool, the agent may change lanes now.
        centre: lateral position of the target lane's centre relative to the
            agent's lane centre, m (left > 0).
        half_width: corridor share for obstacles in the target lane, m.
    """

    target: Tensor
    eligible: Tensor
    centre: Tensor
    half_width: Tensor


@dataclass(frozen=True)
class LaneChange:
    """Each agent's path, s, d, cooldown and acceleration after this step's decision. [B, N]"""

    changed: Tensor
    path: Tensor
    s: Tensor
    d: Tensor
    cooldown: Tensor
    accel: Tensor


def keep_lane(state: WorldState, accel: Tensor) -> LaneChange:
    a = state.agents
    return LaneChange(
        changed=torch.zeros_like(a.valid), path=a.path, s=a.s, d=a.d, cooldown=a.lane_change_cooldown, accel=accel
    )


def options(state: WorldState, is_idm: Tensor, settings: IdmSettings) -> LaneOptions | None:
    """Candidate lanes for this step, or None when no agent may change lanes now."""
    agents, roadmap = state.agents, state.map
    period = max(1, round(settings.decision_period / state.dt))
    deciding = (state.step % period == 0).unsqueeze(1)  # (B, 1)
    if not bool(deciding.any()):
        return None
    decision = torch.div(state.step, period, rounding_mode="floor")
    side = (1 - 2 * (decision % 2)).unsqueeze(1)  # (B, 1): left on even decisions
    here = agents.path.clamp_min(0)
    target = torch.where(side > 0, torch.gather(roadmap.path_left, 1, here), torch.gather(roadmap.path_right, 1, here))
    usable = (target >= 0) & torch.gather(roadmap.path_valid, 1, target.clamp_min(0))
    on_path = agents.s < torch.gather(roadmap.path_length, 1, here)
    eligible = (
        is_idm & deciding & usable & on_path & (state.params.politeness >= 0) & (agents.lane_change_cooldown <= 0)
    )
    if not bool(eligible.any()):
        return None
    width_here = torch.gather(roadmap.path_width, 1, here)
    width_target = torch.gather(roadmap.path_width, 1, target.clamp_min(0))
    return LaneOptions(
        target=torch.where(usable, target, torch.full_like(target, -1)),
        eligible=eligible,
        centre=side * 0.5 * (width_here + width_target),
        half_width=0.5 * width_target - settings.lane_intrusion,
    )


def _followers(state: WorldState) -> Driver:
    """IDM parameters [B, N + 1] of every possible follower: the agents, then the ego.

    Desired speeds are at least the current speed, so that followers that do
    not drive by IDM (replayed, walking, the ego) are not modelled as braking
    towards a lower desired speed.
    """
    own = agent_drivers(state)
    ego = state.ego
    limit = torch.gather(state.map.path_speed_limit, 1, ego.route.unsqueeze(1))  # (B, 1)
    speeds = torch.cat((state.agents.speed, ego.speed.unsqueeze(1)), dim=1)  # (B, N + 1)

    def with_ego(values: Tensor, ego_value: Tensor | float) -> Tensor:
        ego_column = ego_value if isinstance(ego_value, Tensor) else torch.full_like(limit, ego_value)
        return torch.cat((values, ego_column), dim=1)  # (B, N + 1)

    return Driver(
        desired_speed=torch.maximum(with_ego(own.desired_speed, limit), speeds).clamp_min(1.0),
        time_headway=with_ego(own.time_headway, EGO_TIME_HEADWAY),
        min_gap=with_ego(own.min_gap, EGO_MIN_GAP),
        max_accel=with_ego(own.max_accel, EGO_MAX_ACCEL),
        comfort_decel=with_ego(own.comfort_decel, EGO_COMFORT_DECEL),
    )


def _follower_accels(
    follower: Neighbour,
    drivers: Driver,
    obstacles: Obstacles,
    heading: Tensor,
    with_me: tuple[Tensor, Tensor],
    without_me: tuple[Tensor, Tensor, Tensor],
    settings: IdmSettings,
) -> tuple[Tensor, Tensor]:
    """A follower's IDM acceleration with the agent as its leader and without it.

    `with_me` = (my speed, the follower's gap to me); `without_me` = (the
    leader's speed, the gap to it, whether it exists). Zero where there is no follower.
    """
    driver = drivers.pick(follower.index)
    v = speed_along(obstacles, follower.index, heading)
    my_speed, gap_to_me = with_me
    their_speed, gap_to_them, leader_exists = without_me
    behind_me = idm_accel(driver, v, gap_to_me, v - my_speed, torch.ones_like(follower.exists), settings)
    behind_them = idm_accel(driver, v, gap_to_them, v - their_speed, leader_exists, settings)
    present = follower.exists.to(v.dtype)
    return behind_me * present, behind_them * present


def decide(
    state: WorldState,
    obstacles: Obstacles,
    here: lanes.PathPoint,
    found: Found,
    leader_speed: Tensor,
    accel: Tensor,
    lane: LaneOptions,
    settings: IdmSettings,
) -> LaneChange:
    """This step's lane changes, applied to path, s, d, cooldown and accel.

    `found` must hold the follower and target-lane neighbours; `accel` is each
    agent's IDM acceleration behind its current `leader_speed` leader.
    """
    agents = state.agents
    if found.follower is None or found.target_leader is None or found.target_follower is None:
        raise ValueError("mobil.decide: the neighbour search was run without the target lane")
    new_leader, new_follower, old_follower = found.target_leader, found.target_follower, found.follower
    v, heading, my_length = agents.speed, agents.yaw, agents.length
    new_leader_speed = speed_along(obstacles, new_leader.index, heading)
    accel_after = idm_accel(agent_drivers(state), v, new_leader.gap, v - new_leader_speed, new_leader.exists, settings)
    drivers = _followers(state)
    new_with, new_without = _follower_accels(
        new_follower,
        drivers,
        obstacles,
        heading,
        (v, new_follower.gap),
        (new_leader_speed, new_follower.gap + my_length + new_leader.gap, new_leader.exists),
        settings,
    )
    old_with, old_without = _follower_accels(
        old_follower,
        drivers,
        obstacles,
        heading,
        (v, old_follower.gap),
        (leader_speed, old_follower.gap + my_length + found.leader.gap, found.leader.exists),
        settings,
    )
    others = (new_with - new_without) + (old_without - old_with)
    gain = accel_after - accel + state.params.politeness * others
    room = (~new_leader.exists | (new_leader.gap > 0)) & (~new_follower.exists | (new_follower.gap > 0))
    safe = room & (new_with >= -settings.safe_decel) & (accel_after >= -settings.safe_decel)
    changed = lane.eligible & safe & (gain > settings.change_threshold)
    if not bool(changed.any()):
        return keep_lane(state, accel)
    return _apply(state, here, changed, lane.target, torch.where(changed, accel_after, accel), settings)


def _apply(
    state: WorldState,
    here: lanes.PathPoint,
    changed: Tensor,
    target: Tensor,
    accel: Tensor,
    settings: IdmSettings,
) -> LaneChange:
    agents, roadmap = state.agents, state.map
    tgt = target.clamp_min(0)
    s_there = lanes.arc_length_at_index(roadmap, tgt, here.index, here.frac)
    centre, tangent = lanes.centre_at_index(roadmap, tgt, here.index, here.frac)
    rel = agents.xy - centre
    d_there = tangent[..., 0] * rel[..., 1] - tangent[..., 1] * rel[..., 0]  # left of the new lane > 0
    return LaneChange(
        changed=changed,
        path=torch.where(changed, tgt, agents.path),
        s=torch.where(changed, s_there, agents.s),
        d=torch.where(changed, d_there, agents.d),
        cooldown=torch.where(changed, torch.full_like(agents.s, settings.cooldown), agents.lane_change_cooldown),
        accel=accel,
    )
