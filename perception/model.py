"""`Perception`: the runtime chain SensorFrame -> Detections -> Tracks, with explicit state.

    model = Perception(PerceptionConfig())
    state = model.initial_state(first_frame)
    for frame in frames:
        detections, tracks, state = model.step(state, frame)

`step` is a pure function of (state, frame): FrameStack push -> detector input
-> Detector -> decode (existence temperature and position-covariance scale
from the config) -> Tracker.step
with the frame's ego pose and dt = the given `Timing`'s `sim_dt`. Checkpoints hold the
detector weights and this config (calibration included) as JSON, via
`core.checkpoint`, so loading never unpickles.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from core.checkpoint import CheckpointError, load_model_checkpoint, load_weights, save_checkpoint
from core.config import ConfigError, Timing, config_from_dict
from perception.config import DetectorConfig
from perception.decode import decode, harden, scale_position_covariance
from perception.detector import Detector
from perception.frames import FrameStack, detector_input, initial_stack, push
from perception.tracking import Tracker, TrackerConfig, TrackerState
from perception.types import Detections, Tracks
from sim.config import RasterConfig
from sim.types import SensorFrame

CHECKPOINT_KIND = "perception"
DETECTOR_PREFIX = "detector."


@dataclass(frozen=True)
class PerceptionConfig:
    """The runtime chain's settings.

    Attributes:
        detector: the detector network, its input stack and output slots.
        tracker: the multi-object tracker.
        temperature: T > 0 dividing the existence logit at decode
            (`perception.calibration.fit_temperature`; 1 = uncalibrated).
        position_cov_scale: s > 0 multiplying every decoded position covariance
            (`perception.calibration.fit_covariance_scale`; 1 = uncalibrated).
        argmax: the ablation switch: hand the tracker thresholded, one-hot,
            point detections (`perception.decode.harden`) instead of
            distributions. Never the default.
    """

    detector: DetectorConfig = DetectorConfig()
    tracker: TrackerConfig = TrackerConfig()
    temperature: float = 1.0
    position_cov_scale: float = 1.0
    argmax: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.detector, DetectorConfig):
            raise ConfigError(f"PerceptionConfig.detector: expected a DetectorConfig, got {self.detector!r}")
        if not isinstance(self.tracker, TrackerConfig):
            raise ConfigError(f"PerceptionConfig.tracker: expected a TrackerConfig, got {self.tracker!r}")
        if not (isinstance(self.temperature, int | float) and self.temperature > 0):
            raise ConfigError(f"PerceptionConfig.temperature: expected a number > 0, got {self.temperature!r}")
        scale = self.position_cov_scale
        if not (isinstance(scale, int | float) and math.isfinite(scale) and scale > 0):
            raise ConfigError(f"PerceptionConfig.position_cov_scale: expected a finite number > 0, got {scale!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PerceptionConfig:
        """Inverse of `to_dict`; unknown or bad fields raise `ConfigError` naming them."""
        return config_from_dict(cls, data, "PerceptionConfig")

    @classmethod
    def tiny(cls, raster: RasterConfig | None = None, **changes: Any) -> PerceptionConfig:
        """A tiny detector and few track slots, for tests and smoke runs."""
        base = {"detector": DetectorConfig.tiny(raster), "tracker": TrackerConfig(slots=8)}
        base.update(changes)
        return cls(**base)


@dataclass(frozen=True)
class PerceptionState:
    """The chain's recurrent state.

    Attributes:
        frames: the last K sensor frames (the detector's input memory).
        tracker: the tracker's filter state.
    """

    frames: FrameStack
    tracker: TrackerState

    def validate(self) -> PerceptionState:
        self.frames.validate()
        self.tracker.validate()
        return self

    def to_flat(self, prefix: str) -> dict[str, Tensor]:
        """Named tensors `<prefix>.frames.*` and `<prefix>.tracker.*` (the exported graphs' form)."""
        return {**self.frames.to_flat(f"{prefix}.frames"), **self.tracker.to_flat(f"{prefix}.tracker")}

    @classmethod
    def from_flat(cls, named: dict[str, Tensor], prefix: str) -> PerceptionState:
        return cls(FrameStack.from_flat(named, f"{prefix}.frames"), TrackerState.from_flat(named, f"{prefix}.tracker"))

    @classmethod
    def flat_names(cls, prefix: str) -> list[str]:
        return FrameStack.flat_names(f"{prefix}.frames") + TrackerState.flat_names(f"{prefix}.tracker")


class Perception(nn.Module):
    """SensorFrame -> (Detections, Tracks) with explicit recurrent state; see the module docstring."""

    def __init__(self, cfg: PerceptionConfig = PerceptionConfig(), timing: Timing = Timing()):
        super().__init__()
        self.cfg = cfg
        self.detector = Detector(cfg.detector)
        cfg.tracker.check_timing(timing)
        self.tracker = Tracker(cfg.tracker)
        self.dt = timing.sim_dt  # the tracker predicts over one sim step: the caller's Timing, not a default

    def initial_state(self, frame: SensorFrame) -> PerceptionState:
        """The state at episode start: the first frame repeated K times, no tracks."""
        self._check_frame(frame)
        dtype = frame.bev.dtype
        tracker = self.tracker.initial_state(frame.batch_size, frame.bev.device, dtype)
        return PerceptionState(frames=initial_stack(frame, self.cfg.detector.frames), tracker=tracker)

    def detect(self, stack: FrameStack) -> Detections:
        """Detections of the stack's current frame (ego frame now), decoded once at the edge."""
        det = self.cfg.detector
        x = detector_input(stack, det.raster, det.warp_mode)  # (B, 2K + 3, H, W)
        detections = decode(self.detector(x), det.raster, det.stride, det.slots, self.cfg.temperature)
        detections = scale_position_covariance(detections, self.cfg.position_cov_scale)
        return harden(detections) if self.cfg.argmax else detections

    def step(self, state: PerceptionState, frame: SensorFrame) -> tuple[Detections, Tracks, PerceptionState]:
        """One sim step: returns (detections, tracks, new_state); `state` is not modified."""
        self._check_frame(frame)
        stack = push(state.frames, frame)
        detections = self.detect(stack)
        tracks, tracker = self.tracker.step(state.tracker, detections, frame.ego_pose, self.dt)
        return detections, tracks, PerceptionState(frames=stack, tracker=tracker)

    def forward(self, state: PerceptionState, frame: SensorFrame) -> tuple[Detections, Tracks, PerceptionState]:
        return self.step(state, frame)

    def _check_frame(self, frame: SensorFrame) -> None:
        size = self.cfg.detector.raster.size
        if frame.bev.dim() != 4 or tuple(frame.bev.shape[-2:]) != (size, size):
            raise ValueError(
                f"Perception frame.bev: expected shape [B, 2, {size}, {size}] "
                f"(the detector's raster), got {tuple(frame.bev.shape)}"
            )

    # -- checkpoints -----------------------------------------------------
    def weights(self) -> dict[str, Tensor]:
        """The learnable weights under their `detector.*` names (the tracker has none)."""
        return {f"{DETECTOR_PREFIX}{k}": v for k, v in self.detector.state_dict().items()}

    def save(self, path: str | Path, **meta: Any) -> Path:
        """Write weights and config (temperature included) atomically."""
        return save_checkpoint(path, self.weights(), self.cfg.to_dict(), model=CHECKPOINT_KIND, **meta)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu") -> Perception:
        """A model from any checkpoint holding a `PerceptionConfig` and `detector.*` weights."""
        ckpt, cfg = load_model_checkpoint(path, CHECKPOINT_KIND, PerceptionConfig, device)
        try:
            model = cls(cfg).to(device)
        except ConfigError as exc:  # a config that parses but does not fit the Timing (the tracker's sampling)
            raise CheckpointError(f"checkpoint {path}: {exc}") from exc
        model.load_weights(ckpt.tensors, str(path))
        return model

    def load_weights(self, tensors: dict[str, Tensor], source: str) -> None:
        """Copy the `detector.*` tensors in; missing or unexpected names raise `CheckpointError`."""
        weights = {k[len(DETECTOR_PREFIX) :]: v for k, v in tensors.items() if k.startswith(DETECTOR_PREFIX)}
        load_weights(self.detector, weights, source, "detector")
