"""The stack policy on an exported artifact: `drivestack sim --policy stack --backend onnxruntime`.

The simulator drives the graphs that ship (`stack_step`, and `perception_step`
between plans when `plan_every` > 1) through a `deploy.Runtime`, so the
closed-loop metrics are those of the artifact, not of the Python model it came
from. Only the episode's initial state is made in Python: it is the first frame
repeated and an empty tracker (`Perception.initial_state`), which needs the
config, not the weights. The onnxruntime and tensorrt factories at the bottom
are plug-ins `drivestack.stack_backends` of the package metadata, which
`stack.policy.make_stack_policy` loads by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from core.config import Timing
from deploy.artifact import Artifact
from deploy.runtime import open_runtime
from perception.model import Perception, PerceptionState
from sim.policies import Overlay
from sim.proposals import PreviousPlan
from sim.types import SensorFrame
from stack.config import StackConfig
from stack.model import StackState
from stack.policy import StackPolicy


class RuntimeStackPolicy(StackPolicy):
    """`StackPolicy` whose steps run an exported artifact's graphs on one backend."""

    def __init__(
        self,
        artifact: str | Path,
        backend: str = "onnxruntime",
        device: str = "cpu",
        sigma: float | None = None,
        plan_every: int = 1,
        argmax: bool = False,
        timing: Timing = Timing(),
        **options: Any,
    ):
        if not (isinstance(plan_every, int) and plan_every >= 1):
            raise ValueError(f"RuntimeStackPolicy.plan_every: expected an int >= 1, got {plan_every!r}")
        cfg = StackConfig.from_dict(Artifact.open(artifact).config)
        if cfg.argmax != argmax:
            raise ValueError(
                f"artifact {artifact}: exported with argmax={cfg.argmax}, but the policy asks for argmax={argmax} "
                "(export the ablation from a checkpoint loaded with argmax=True)"
            )
        self.step_graph = open_runtime(artifact, "stack_step", backend, device, **options)
        self.perception_graph = open_runtime(artifact, "perception_step", backend, device, **options)
        self.initial = Perception(cfg.perception, timing)
        self.sigma = cfg.sigma if sigma is None else float(sigma)
        self.plan_every = plan_every
        self.timing = timing

    def initial_state(self, batch: int, device: Any) -> None:
        return None  # the runtime keeps its own device (`device`); inputs and outputs are moved to and fro

    def start(self, frame: SensorFrame) -> StackState:
        return StackState(self.initial.initial_state(frame), PreviousPlan.none(frame, self.timing))

    def plan(self, state: StackState, frame: SensorFrame, sigma: Tensor) -> tuple[Tensor, Tensor, StackState, Overlay]:
        out = self.step_graph.run({**frame.to_flat("frame"), **state.to_flat("state"), "sigma": sigma})
        out = {name: value.to(frame.bev.device) for name, value in out.items()}
        drawn = Overlay(
            candidates=out["plan.candidates"][..., :2],
            candidate_weights=out["plan.candidate_weights"],
            candidate_risk=out["plan.candidate_risk"],
            chosen=out["plan.chosen"],
            sigma=out["plan.sigma"],
        )
        return out["plan.trajectory"], out["plan.speed"], StackState.from_flat(out, "new_state"), drawn

    def perceive(self, state: StackState, frame: SensorFrame) -> StackState:
        out = self.perception_graph.run({**frame.to_flat("frame"), **state.perception.to_flat("state")})
        perception = PerceptionState.from_flat({k: v.to(frame.bev.device) for k, v in out.items()}, "new_state")
        return StackState(perception, state.plan)


def _factory(backend: str):
    def make(argmax: bool = False, artifact: str | Path | None = None, **options: Any) -> RuntimeStackPolicy:
        if artifact is None:
            raise ValueError(
                f"stack policy on {backend}: --artifact DIR is required (make one with `drivestack export`)"
            )
        return RuntimeStackPolicy(artifact, backend, argmax=argmax, **options)

    return make


# Plug-ins `drivestack.stack_backends` (pyproject.toml): `--policy stack --backend onnxruntime|tensorrt`.
onnxruntime_stack_policy = _factory("onnxruntime")
tensorrt_stack_policy = _factory("tensorrt")
