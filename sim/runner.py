"""Closed-loop rollouts: a policy drives the ego through batches of episodes.

One loop for every policy: observe, act every policy period, track the plan
with the controller, step the world, accumulate metrics. A failure confined to
some episodes (a policy returning NaN for them) is recorded for those episodes
while the rest of the batch carries on; a batch that raises is retried one
episode at a time so one bad episode never loses the metrics of the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from core.config import Timing
from sim.config import RasterConfig
from sim.controller import TrackingController, centre_plan_to_rear_axle
from sim.metrics import EpisodeAccumulator, composite_score
from sim.policies import Observation, Policy, PolicyOutput
from sim.sensors import frame_and_detections, ground_truth, render_frame
from sim.state import WorldState
from sim.step import step as sim_step

# Observers (the recorder for videos) see each step's state, observation and plan.
StepObserver = Callable[[WorldState, Observation, PolicyOutput], None]


@dataclass(frozen=True)
class EpisodeResult:
    """Per-episode metrics (floats) or the error that ended the episode."""

    scenario: str
    family: str
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def observe(state: WorldState, policy: Policy, raster: RasterConfig) -> Observation:
    """Compute the observation parts the policy reads (the frame always)."""
    if "detections" in policy.inputs:
        frame, det = frame_and_detections(state, raster)  # one noisy scan for both
    else:
        frame, det = render_frame(state, raster), None
    gt = ground_truth(state, raster) if "ground_truth" in policy.inputs else None
    return Observation(frame=frame, ground_truth=gt, detections=det)


def _sanitise(plan: PolicyOutput, failed: Tensor, errors: list[str | None], step_index: int) -> PolicyOutput:
    """Replace non-finite plans by a stop in place and mark those episodes failed."""
    bad = ~torch.isfinite(plan.trajectory).flatten(1).all(-1)
    if plan.speeds is not None:
        bad |= ~torch.isfinite(plan.speeds).all(-1)
    if not bool(bad.any()):
        return plan
    for b in torch.nonzero(bad & ~failed).flatten().tolist():
        errors[b] = f"policy returned a non-finite trajectory at step {step_index}"
    failed |= bad
    trajectory = torch.where(bad[:, None, None], torch.zeros_like(plan.trajectory), plan.trajectory)
    speeds = None if plan.speeds is None else torch.where(bad[:, None], torch.zeros_like(plan.speeds), plan.speeds)
    return PolicyOutput(trajectory=trajectory, speeds=speeds, overlay=plan.overlay)


def rollout(
    state: WorldState,
    policy: Policy,
    steps: int,
    *,
    timing: Timing = Timing(),
    raster: RasterConfig = RasterConfig(),
    controller: TrackingController | None = None,
    observer: StepObserver | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[WorldState, dict[str, Tensor], list[str | None]]:
    """Drive `steps` sim steps; returns the final state, per-episode metrics and errors."""
    controller = controller or TrackingController()
    B = state.batch_size
    policy_state = policy.initial_state(B, state.device)
    accumulator = EpisodeAccumulator.init(state)
    failed = torch.zeros(B, dtype=torch.bool, device=state.device)
    errors: list[str | None] = [None] * B
    plan: PolicyOutput | None = None
    for k in range(steps):
        obs = observe(state, policy, raster)
        if plan is None or k % timing.policy_period_steps == 0:
            plan, policy_state = policy.act(policy_state, obs)
            plan = _sanitise(plan, failed, errors, k)
        if observer is not None:
            observer(state, obs, plan)
        rear_axle_plan = centre_plan_to_rear_axle(plan.trajectory, state.ego.wheelbase)
        action = controller(state.ego, rear_axle_plan, plan.speeds)
        next_state = sim_step(state, action)
        accumulator = accumulator.update(state, next_state)
        state = next_state
        if progress is not None:
            progress(1)
    results = accumulator.finalize(state)
    results["score"] = composite_score(results)
    return state, results, errors
