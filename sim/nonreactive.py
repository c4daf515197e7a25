"""nuPlan's non-reactive mode: agents replay what they would have done without the ego.

`make_non_reactive(state, steps)` rolls the world forward with every agent
ignoring the ego, records every agent's pose, and returns the initial state
with the moving agents (IDM, WALK) turned into REPLAY of that recording, so
they follow it whatever the ego does.

During the recording the ego is held still at its initial pose (zero speed,
zero action): since no agent yields to it, where it is makes no difference to
the agents, and a still ego needs no route-following controller.
"""

from __future__ import annotations

import dataclasses

import torch

from sim.dynamics.driver import DEFAULT_IDM, IdmSettings
from sim.state import AgentLog, Behaviour, WorldState
from sim.step import EgoAction, step


def record(state: WorldState, steps: int, settings: IdmSettings = DEFAULT_IDM) -> AgentLog:
    """Every agent's pose at steps 0..`steps` [B, N, steps + 1] with agents ignoring a still ego."""
    params = dataclasses.replace(state.params, yields_to_ego=torch.zeros_like(state.params.yields_to_ego))
    ego = dataclasses.replace(state.ego, speed=torch.zeros_like(state.ego.speed))
    world = dataclasses.replace(state, params=params, ego=ego)
    zero = torch.zeros_like(state.ego.speed)
    hold = EgoAction(accel=zero, steer=zero)
    xy, yaw, valid = [world.agents.xy], [world.agents.yaw], [world.agents.valid]
    for _ in range(steps):
        world = step(world, hold, settings=settings)
        xy.append(world.agents.xy)
        yaw.append(world.agents.yaw)
        valid.append(world.agents.valid)
    return AgentLog(xy=torch.stack(xy, dim=2), yaw=torch.stack(yaw, dim=2), valid=torch.stack(valid, dim=2))


def make_non_reactive(state: WorldState, steps: int, *, settings: IdmSettings = DEFAULT_IDM) -> WorldState:
    """`state` with IDM and WALK agents replaying `steps` recorded steps (log index 0 = `state`).

    The returned log has TL = steps + 1; REPLAY agents leave the scene after
    its end. Existing REPLAY agents are re-recorded (identical within their old
    log); STATIC agents stay STATIC. Requires every episode at step 0, because
    REPLAY reads the log at the absolute step index.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"make_non_reactive: steps must be an int >= 1, got {steps!r}")
    if bool((state.step != 0).any()):
        first = int((state.step != 0).nonzero()[0, 0])
        raise ValueError(
            f"make_non_reactive: state.step must be 0 in every episode (log index 0 is the "
            f"initial pose), episode {first} is at step {int(state.step[first])}"
        )
    log = record(state, steps, settings)
    behaviour = state.agents.behaviour
    moving = (behaviour == int(Behaviour.IDM)) | (behaviour == int(Behaviour.WALK))
    replayed = torch.where(moving, torch.full_like(behaviour, int(Behaviour.REPLAY)), behaviour)
    return dataclasses.replace(state, agents=dataclasses.replace(state.agents, behaviour=replayed), log=log)
