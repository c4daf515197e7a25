"""The stack's parts as graphs on flat named tensors: the form ONNX, onnxruntime and TensorRT take.

Each graph is the stack's own code (no second implementation) between
contracts flattened with `TensorContract.to_flat`: `frame.bev`,
`state.tracker.mean`, `detections.existence`, `forecast.means`, `plan.trajectory`,
`new_state.tracker.mean`, ... plus `sigma` [B] and, for the sampled variants,
`noise.mode` [B, A, S] and `noise.position` [B, A, S, T, 2].

    detector          frames.* (the state's frame stack with this frame pushed) -> detections.*
    tracker           state.tracker.*, detections.*, frame.ego_pose -> tracks.*, new_state.tracker.*
    predictor         tracks.*, frame.route [, frame.map] [, frame.lanes*]  -> forecast.*
    planner           forecast.*, frame.*, tracks.size, state.plan.*, sigma [, noise.*] -> plan.*
    perception_step   frame.*, state.frames.*, state.tracker.* -> new_state.frames.*, new_state.tracker.*
    stack_step        frame.*, state.*, sigma [, noise.*]  -> plan.*, new_state.*

The batch axis is dynamic everywhere, and so is the sample axis of the noise;
every other size (slots, agents, modes, horizon, raster) is fixed by the config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from core.contracts import FlatModule, Named
from deploy.spec import BATCH, SAMPLES
from perception.frames import FrameStack
from perception.model import PerceptionState
from perception.tracking.state import TrackerState
from perception.types import Detections, Tracks
from planning.types import Plan
from prediction.types import Forecast
from sim.proposals import PreviousPlan
from sim.types import SensorFrame
from stack.model import Stack, StackState

FRAME = SensorFrame.flat_names("frame")
PERCEPTION_STATE = PerceptionState.flat_names("state")
STATE = StackState.flat_names("state")
PREVIOUS_PLAN = PreviousPlan.flat_names("state.plan")
NOISE = ["noise.mode", "noise.position"]


def _noise(named: Named) -> tuple[Tensor, Tensor] | None:
    return (named["noise.mode"], named["noise.position"]) if "noise.mode" in named else None


def _detector(stack: Stack, named: Named) -> Named:
    return stack.perception.detect(FrameStack.from_flat(named, "frames")).to_flat("detections")


def _tracker(stack: Stack, named: Named) -> Named:
    state = TrackerState.from_flat(named, "state.tracker")
    detections = Detections.from_flat(named, "detections")
    tracks, new = stack.perception.tracker.step(state, detections, named["frame.ego_pose"], stack.perception.dt)
    return {**tracks.to_flat("tracks"), **new.to_flat("new_state.tracker")}


def _predictor(stack: Stack, named: Named) -> Named:
    tracks = Tracks.from_flat(named, "tracks")
    lanes = named.get("frame.lanes"), named.get("frame.lanes_valid")
    return stack.forecast(tracks, named.get("frame.map"), named["frame.route"], *lanes).to_flat("forecast")


def _planner(stack: Stack, named: Named) -> Named:
    forecast = Forecast.from_flat(named, "forecast")
    frame = SensorFrame.from_flat(named, "frame")
    previous = PreviousPlan.from_flat(named, "state.plan")
    plan = stack.planner(forecast, frame, named["sigma"], agent_size=named["tracks.size"], noise=_noise(named),
                         previous=previous)  # fmt: skip
    return plan.to_flat("plan")


def _perception_step(stack: Stack, named: Named) -> Named:
    _, _, new = stack.perception.step(PerceptionState.from_flat(named, "state"), SensorFrame.from_flat(named, "frame"))
    return new.to_flat("new_state")


def _stack_step(stack: Stack, named: Named) -> Named:
    frame = SensorFrame.from_flat(named, "frame")
    out = stack.step_outputs(StackState.from_flat(named, "state"), frame, named["sigma"], noise=_noise(named))
    return {**out.plan.to_flat("plan"), **out.state.to_flat("new_state")}


@dataclass(frozen=True)
class GraphDef:
    """A graph's name, its input and output names in order, and the code between them."""

    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    run: Callable[[Stack, Named], Named]


def graph_defs(stack: Stack) -> dict[str, GraphDef]:
    """Every exported graph of `stack`, by name."""
    detections, tracks = Detections.flat_names("detections"), Tracks.flat_names("tracks")
    forecast, plan = Forecast.flat_names("forecast"), Plan.flat_names("plan")
    tracker_state = TrackerState.flat_names("state.tracker")
    new_state = [name.replace("state.", "new_state.", 1) for name in STATE]
    new_perception_state = [name.replace("state.", "new_state.", 1) for name in PERCEPTION_STATE]
    planner_in = (*forecast, *FRAME, "tracks.size", *PREVIOUS_PLAN, "sigma")
    reads = stack.cfg.predictor
    predictor_in = (*tracks, *(("frame.map",) if reads.map_channels else ()), "frame.route",
                    *(("frame.lanes", "frame.lanes_valid") if reads.lanes else ()))  # fmt: skip
    defs = [
        GraphDef("detector", tuple(FrameStack.flat_names("frames")), tuple(detections), _detector),
        GraphDef(
            "tracker",
            (*tracker_state, *detections, "frame.ego_pose"),
            (*tracks, *(n.replace("state.", "new_state.", 1) for n in tracker_state)),
            _tracker,
        ),
        GraphDef("predictor", predictor_in, tuple(forecast), _predictor),
        GraphDef("planner", planner_in, tuple(plan), _planner),
        GraphDef("planner_sampled", (*planner_in, *NOISE), tuple(plan), _planner),
        GraphDef("perception_step", (*FRAME, *PERCEPTION_STATE), tuple(new_perception_state), _perception_step),
        GraphDef("stack_step", (*FRAME, *STATE, "sigma"), (*plan, *new_state), _stack_step),
        GraphDef("stack_step_sampled", (*FRAME, *STATE, "sigma", *NOISE), (*plan, *new_state), _stack_step),
    ]
    return {d.name: d for d in defs}


GRAPH_NAMES = ("detector", "tracker", "predictor", "planner", "planner_sampled", "perception_step", "stack_step",
               "stack_step_sampled")  # fmt: skip


def dynamic_axes(name: str) -> dict[int, str]:
    """The dynamic axes of a graph tensor by its name: the batch, and the noise's sample axis."""
    return {0: BATCH, 2: SAMPLES} if name in NOISE else {0: BATCH}


class FlatGraph(FlatModule):
    """One graph of a stack as a module (`core.contracts.FlatModule`: what `torch.onnx.export` traces)."""

    def __init__(self, stack: Stack, definition: GraphDef):
        super().__init__(stack, definition.inputs, definition.outputs, definition.run, name="stack")
        self.definition = definition


def flat_graph(stack: Stack, name: str) -> FlatGraph:
    defs = graph_defs(stack)
    if name not in defs:
        raise ValueError(f"graph {name!r}: expected one of {', '.join(GRAPH_NAMES)}")
    return FlatGraph(stack, defs[name]).eval()
