"""The stack as a closed-loop simulator policy: `drivestack sim --policy stack`.

The policy reads only the sensor frame (no ground truth, no object list): the
stack's own detector and tracker do the rest. Its recurrent state is the
stack's, created from the first frame it sees. `stack` and `stack-argmax` (the
ablation, same weights), both loading the shipped default weights, are plug-ins
`drivestack.policies` of the package metadata (`core.plugins`), found by
`sim.policies.make_policy` without `sim` importing this module.

`plan_every` > 1 runs the full step (perception, prediction, planning) every
that many frames and perception alone in between, so the tracker still sees
every frame; in between, the last plan is re-expressed in the current ego
frame (from the localisation poses) and advanced by the time elapsed. It
exists to fit closed-loop evaluation into a CPU budget; on a vehicle the whole
step runs every frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from core.config import Timing
from core.plugins import load_plugin, plugin_names
from core.weights import find_weights
from perception.types import Detections, Tracks
from planning.types import Plan
from prediction.types import Forecast
from sim.geometry import local_to_world, world_to_local
from sim.policies import Observation, Overlay, PolicyOutput
from sim.proposals.previous import interpolate_steps
from sim.types import SensorFrame
from stack.model import Stack, StackOutput, StackState

STACK_WEIGHTS = "stack.safetensors"  # the shipped stack's file name, found by `core.weights`' search order
REPRODUCE = "make stack-weights"


def stack_weights(path: str | Path | None = None) -> Path:
    """The stack checkpoint: `path` when given, else the shipped one (`core.weights.find_weights`)."""
    return find_weights(STACK_WEIGHTS, path, REPRODUCE)


@dataclass(frozen=True)
class PolicyState:
    """The policy's memory between frames.

    Attributes:
        stack: the stack's recurrent state.
        frames: frames seen so far.
        plan_xy: [B, T, 2] the last plan, world frame.
        plan_speed: [B, T] its speeds.
        plan_time: [B] the frame time it was made at, s.
        overlay: what it drew.
    """

    stack: StackState
    frames: int
    plan_xy: Tensor
    plan_speed: Tensor
    plan_time: Tensor
    overlay: Overlay


class StackPolicy:
    """A `sim.policies.Policy` driving with a `Stack` at a fixed sigma (module docstring)."""

    name: ClassVar[str] = "stack"
    inputs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, stack: Stack, sigma: float | None = None, plan_every: int = 1, timing: Timing = Timing()):
        if not (isinstance(plan_every, int) and plan_every >= 1):
            raise ValueError(f"StackPolicy.plan_every: expected an int >= 1, got {plan_every!r}")
        self.stack = stack.eval()
        self.sigma = stack.cfg.sigma if sigma is None else float(sigma)
        self.plan_every, self.timing = plan_every, timing

    @classmethod
    def from_checkpoint(
        cls, path: str | Path | None = None, sigma: float | None = None, plan_every: int = 1, **changes: Any
    ) -> StackPolicy:
        """The policy on the checkpoint at `path` (None: the shipped stack, `stack_weights`)."""
        return cls(Stack.load(stack_weights(path), **changes), sigma, plan_every)

    def initial_state(self, batch: int, device: Any) -> None:
        self.stack.to(device)  # the stack runs where the episodes are (under torchrun, each rank's own GPU)
        return None  # the stack's state needs the first frame

    @torch.inference_mode()
    def act(self, state: PolicyState | None, obs: Observation) -> tuple[PolicyOutput, PolicyState]:
        frame = obs.frame
        if state is None or state.frames % self.plan_every == 0:
            stack_state = self.start(frame) if state is None else state.stack
            trajectory, speed, stack_state, drawn = self.plan(
                stack_state, frame, torch.full_like(frame.ego_speed, self.sigma)
            )
            plan_xy = plan_to_world(trajectory[..., :2], frame)
            frames = 0 if state is None else state.frames
            new = PolicyState(stack_state, frames + 1, plan_xy, speed, frame.time, drawn)
        else:
            stack_state = self.perceive(state.stack, frame)
            new = PolicyState(
                stack_state, state.frames + 1, state.plan_xy, state.plan_speed, state.plan_time, state.overlay
            )
        trajectory, speeds = self.current_plan(new, frame)
        return PolicyOutput(trajectory=trajectory, speeds=speeds, overlay=new.overlay), new

    # The three things the policy asks of the stack; `deploy.policy` answers them with exported graphs.
    def start(self, frame: SensorFrame) -> StackState:
        """The stack's state at the first frame."""
        return self.stack.initial_state(frame)

    def plan(self, state: StackState, frame: SensorFrame, sigma: Tensor) -> tuple[Tensor, Tensor, StackState, Overlay]:
        """One full step: (trajectory [B, T, 3], speed [B, T], new state, what to draw)."""
        out = self.stack.step_outputs(state, frame, sigma)
        return out.plan.trajectory, out.plan.speed, out.state, overlay(out)

    def perceive(self, state: StackState, frame: SensorFrame) -> StackState:
        """Perception alone (the frames between plans)."""
        return self.stack.perceive(state, frame)

    def current_plan(self, state: PolicyState, frame: SensorFrame) -> tuple[Tensor, Tensor]:
        """The last plan in the current ego frame, each step (t + 1) sample_dt from now."""
        elapsed = (frame.time - state.plan_time).to(state.plan_xy.dtype)  # (B,)
        dt, T = self.timing.sample_dt, state.plan_xy.shape[1]
        times = (torch.arange(T, dtype=elapsed.dtype, device=elapsed.device) + 1) * dt + elapsed[:, None]  # (B, T)
        xy = interpolate_steps(state.plan_xy, times, dt)
        speed = interpolate_steps(state.plan_speed.unsqueeze(-1), times, dt).squeeze(-1)
        pose = frame.ego_pose.to(xy.dtype)
        return world_to_local(xy, pose[:, :2], pose[:, 2]), speed


def plan_to_world(trajectory: Tensor, frame: SensorFrame) -> Tensor:
    """Ego-frame positions `[B, T, 2]` of `frame`'s ego frame into the world frame (its localisation pose)."""
    pose = frame.ego_pose.to(trajectory.dtype)
    return local_to_world(trajectory, pose[:, :2], pose[:, 2])


def overlay(out: StackOutput) -> Overlay:
    """What the renderer draws: detections with their ellipses, forecast modes with their weights,
    and the plan's candidates (weights from their risk)."""
    return overlay_of(out.detections, out.forecast, out.plan, out.tracks)


def overlay_of(d: Detections, f: Forecast, plan: Plan, tracks: Tracks | None = None) -> Overlay:
    """`overlay` of the parts, for the policies that run the stack's modules on other inputs."""
    forecast_weights = f.weights * f.valid[..., None] * f.existence[..., None]
    now = None if tracks is None else tracks.state[:, :, -1]  # [B, A, STATE_DIM], position first
    return Overlay(
        objects_xy=d.position,
        objects_cov=d.position_cov,
        objects_prob=d.existence,
        forecasts=f.means,
        forecast_weights=forecast_weights,
        candidates=plan.candidates[..., :2],
        candidate_weights=plan.candidate_weights,
        candidate_risk=plan.candidate_risk,
        chosen=plan.chosen,
        sigma=plan.sigma,
        tracks_xy=None if tracks is None else now[..., :2],
        tracks_cov=None if tracks is None else tracks.state_cov[:, :, -1, :2, :2],
        tracks_prob=None if tracks is None else tracks.existence,
    )


# Runtimes other than torch eager, by backend name: plug-ins of the package metadata (`core.plugins`;
# deploy's onnxruntime and tensorrt), so stack never imports deploy, which builds on it.
BACKENDS = "drivestack.stack_backends"


def make_stack_policy(argmax: bool = False, backend: str = "torch", **options: Any) -> StackPolicy:
    """The `stack` (or `stack-argmax`) policy on `backend`: torch runs the shipped checkpoint; an exported
    backend runs the graphs of `options["artifact"]` (`drivestack export`)."""
    if backend == "torch":
        if "artifact" in options:
            raise ValueError("stack policy: --artifact is for exported backends; torch runs the checkpoint")
        return StackPolicy.from_checkpoint(argmax=argmax, **options)
    if backend not in plugin_names(BACKENDS):
        known = ", ".join(["torch", *plugin_names(BACKENDS)])
        raise ValueError(f"stack policy backend {backend!r}: expected one of {known}")
    return load_plugin(BACKENDS, backend)(argmax=argmax, **options)


def stack_policy(**options: Any) -> StackPolicy:
    """The `stack` policy (plug-in `drivestack.policies: stack`)."""
    return make_stack_policy(argmax=False, **options)


def stack_argmax_policy(**options: Any) -> StackPolicy:
    """The `stack-argmax` ablation (plug-in `drivestack.policies: stack-argmax`)."""
    return make_stack_policy(argmax=True, **options)
