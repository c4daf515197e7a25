"""Diagnostic policies that tell a perception failure from a planning failure (DESIGN.md's protocol).

* `stack-gt`: the stack's tracker, predictor and planner fed by ground truth
  (exact object lists as detections) instead of its detector: the planner's
  upper reference.
* `stack-objects`: the same fed by the simulator's noisy object sensor (jitter,
  misses, ghosts with their confidences as existence), what `pdm` reads.
* `pdm-stack`: the rule-based planner (`sim.policies.pdm`) on the stack's own
  perception and prediction, thresholded: tracks with existence >= 0.5, each
  with its most likely forecast mode.

With `stack` (its own detector, distributions) and `pdm` / `pdm-gt` on the same
episodes, a failure shared by `stack` and `stack-gt` is the planner's, one that
`stack-objects` avoids is perception's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from core.config import Timing
from perception.model import PerceptionState
from perception.objects import detections_from_objects
from perception.tracking.state import TrackerState
from planning.agents import agent_futures
from planning.planner import remember
from sim.policies import Observation, PolicyOutput
from sim.policies.pdm import PDMClosed, PDMConfig
from sim.proposals import PreviousPlan
from sim.types import ObjectList
from stack.model import Stack
from stack.policy import overlay_of, stack_weights

# Position std (m) the object lists are declared to have: ground truth's is nil (a small floor keeps the
# tracker's filter well conditioned), the object sensor's that of the hard suite's jitter (hard-v2's is 0.2).
GROUND_TRUTH_STD = 0.05
OBJECT_SENSOR_STD = 0.15
BELIEF_THRESHOLD = 0.5


@dataclass(frozen=True)
class ObjectStackState:
    """The tracker's filter and the previous plan."""

    tracker: TrackerState
    plan: PreviousPlan


class ObjectListStack:
    """The stack's tracker, predictor and planner on an object list (module docstring); plans every frame."""

    name: ClassVar[str] = "stack-objects"
    inputs: ClassVar[frozenset[str]] = frozenset({"detections"})

    def __init__(self, stack: Stack, position_std: float = OBJECT_SENSOR_STD, sigma: float | None = None):
        self.stack, self.position_std = stack.eval(), position_std
        self.sigma = stack.cfg.sigma if sigma is None else float(sigma)

    def initial_state(self, batch: int, device: Any) -> None:
        self.stack.to(device)  # the stack runs where the episodes are (under torchrun, each rank's own GPU)
        return None

    @torch.inference_mode()
    def act(self, state: ObjectStackState | None, obs: Observation) -> tuple[PolicyOutput, ObjectStackState]:
        frame, objects = obs.frame, self.objects(obs)
        if state is None:
            tracker = self.stack.perception.tracker.initial_state(frame.batch_size, frame.bev.device, frame.bev.dtype)
            state = ObjectStackState(tracker, PreviousPlan.none(frame, self.stack.timing))
        detections = detections_from_objects(objects, self.position_std)
        tracks, tracker = self.stack.perception.tracker.step(state.tracker, detections, frame.ego_pose,
                                                             self.stack.perception.dt)  # fmt: skip
        forecast = self.stack.forecast_frame(tracks, frame)
        sigma = torch.full_like(frame.ego_speed, self.sigma)
        plan = self.stack.planner(forecast, frame, sigma, agent_size=tracks.size, previous=state.plan)
        drawn = overlay_of(detections, forecast, plan)
        output = PolicyOutput(trajectory=plan.trajectory[..., :2], speeds=plan.speed, overlay=drawn)
        return output, ObjectStackState(tracker, remember(plan, frame))

    def objects(self, obs: Observation) -> ObjectList:
        if obs.detections is None:
            raise ValueError("policy input missing: the runner did not provide the object sensor's output")
        return obs.detections


class GroundTruthStack(ObjectListStack):
    """`ObjectListStack` on ground truth."""

    name: ClassVar[str] = "stack-gt"
    inputs: ClassVar[frozenset[str]] = frozenset({"ground_truth"})

    def __init__(self, stack: Stack, sigma: float | None = None):
        super().__init__(stack, GROUND_TRUTH_STD, sigma)

    def objects(self, obs: Observation) -> ObjectList:
        if obs.ground_truth is None:
            raise ValueError("policy input missing: the runner did not provide ground truth")
        return obs.ground_truth


class PDMOnStackPerception:
    """PDM-Closed on the stack's perception and prediction, thresholded (module docstring); plans every frame."""

    name: ClassVar[str] = "pdm-stack"
    inputs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, stack: Stack, timing: Timing = Timing()):
        self.stack, self.timing = stack.eval(), timing
        self.pdm = PDMClosed(PDMConfig(threshold=BELIEF_THRESHOLD), timing, stack.cfg.perception.detector.raster)

    def initial_state(self, batch: int, device: Any) -> None:
        return None

    @torch.inference_mode()
    def act(self, state: tuple[PerceptionState, PreviousPlan | None] | None,
            obs: Observation) -> tuple[PolicyOutput, tuple[PerceptionState, PreviousPlan]]:  # fmt: skip
        frame = obs.frame
        perception, previous = (self.stack.perception.initial_state(frame), None) if state is None else state
        detections, tracks, new_perception = self.stack.perception.step(perception, frame)
        forecast = self.stack.forecast_frame(tracks, frame)
        futures = agent_futures(forecast, tracks.size, None, 0.0, self.timing.sample_dt)
        obstacles = futures.obstacles()
        best = forecast.log_weights.argmax(-1, keepdim=True)  # (B, A, 1): the most likely mode
        believed = (futures.existence >= BELIEF_THRESHOLD)[..., None]
        obstacles = type(obstacles)(_mode(obstacles.means, best), _mode(obstacles.heading, best),
                                    _mode(obstacles.heading_trust, best), obstacles.size,
                                    believed.to(obstacles.prob.dtype))  # fmt: skip
        output, plan = self.pdm.plan(frame, obstacles, previous)
        drawn = overlay_objects(output, detections.position, detections.position_cov, detections.existence)
        return drawn, (new_perception, plan)


def _mode(values: Tensor, best: Tensor) -> Tensor:
    """values[b, a, best[b, a]] kept as a one-outcome axis: [B, A, K, ...] -> [B, A, 1, ...]."""
    index = best.reshape(*best.shape, *([1] * (values.dim() - 3))).expand(*best.shape, *values.shape[3:])
    return values.gather(2, index)


def overlay_objects(output: PolicyOutput, xy: Tensor, cov: Tensor, prob: Tensor) -> PolicyOutput:
    """`output` with the detections drawn."""
    drawn = dataclasses.replace(output.overlay, objects_xy=xy, objects_cov=cov, objects_prob=prob)
    return dataclasses.replace(output, overlay=drawn)


def make_diagnostic(name: str, **options: Any):
    """The diagnostic policy `name` on the shipped stack weights (or `weights=PATH`)."""
    stack = Stack.load(stack_weights(options.pop("weights", None)))
    if name == "stack-gt":
        return GroundTruthStack(stack, **options)
    if name == "stack-objects":
        return ObjectListStack(stack, **options)
    return PDMOnStackPerception(stack, **options)


DIAGNOSTICS = ("stack-gt", "stack-objects", "pdm-stack")


def stack_gt_policy(**options: Any):
    """Plug-in `drivestack.policies: stack-gt`."""
    return make_diagnostic("stack-gt", **options)


def stack_objects_policy(**options: Any):
    """Plug-in `drivestack.policies: stack-objects`."""
    return make_diagnostic("stack-objects", **options)


def pdm_stack_policy(**options: Any):
    """Plug-in `drivestack.policies: pdm-stack`."""
    return make_diagnostic("pdm-stack", **options)
