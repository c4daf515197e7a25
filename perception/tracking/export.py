"""One tracker step on flat named tensors, the form torch.export and ONNX take."""

from __future__ import annotations

from torch import Tensor, nn

from perception.tracking.state import TrackerState
from perception.tracking.tracker import Tracker
from perception.types import Detections, Tracks


class TrackerGraph(nn.Module):
    """`Tracker.step` with inputs and outputs as tuples of tensors in `input_names` / `output_names` order."""

    def __init__(self, tracker: Tracker):
        super().__init__()
        self.tracker = tracker

    @staticmethod
    def input_names() -> list[str]:
        return TrackerState.flat_names("state") + Detections.flat_names("detections") + ["ego_pose", "dt"]

    @staticmethod
    def output_names() -> list[str]:
        return Tracks.flat_names("tracks") + TrackerState.flat_names("new_state")

    @staticmethod
    def flatten_inputs(state: TrackerState, detections: Detections, ego_pose: Tensor, dt: Tensor) -> tuple[Tensor, ...]:
        return (*state.to_flat("state").values(), *detections.to_flat("detections").values(), ego_pose, dt)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        named = dict(zip(self.input_names(), inputs, strict=True))
        state = TrackerState.from_flat(named, "state")
        detections = Detections.from_flat(named, "detections")
        tracks, new_state = self.tracker.step(state, detections, named["ego_pose"], named["dt"])
        return (*tracks.to_flat("tracks").values(), *new_state.to_flat("new_state").values())
