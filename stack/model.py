"""`Stack`: detector -> tracker -> predictor -> planner as one module with explicit recurrent state.

    stack = Stack.load("weights/stack.safetensors")
    state = stack.initial_state(first_frame)
    for frame in frames:
        plan, state = stack.step(state, frame, sigma)

`step` is a pure function of (state, frame, sigma); the state is the
perception chain's (the detector's frame memory and the tracker's filter) and
the plan chosen last (`sim.proposals.PreviousPlan`, world frame), which the
planner offers again and keeps close to (plan consistency): the only memory
the stack has. Every module hands the next a distribution:
`Detections` with existence and covariances, `Tracks` with covariances,
existence and classes, a `Forecast` mixture. The planner turns it into a
`Plan` under the risk sensitivity sigma, a tensor input of the step, so one set
of weights (and one exported graph) serves every sigma. The same forward path
runs in training, in the simulator and in export.

The argmax ablation (`StackConfig.argmax`) runs the same weights on decisions
instead: detections thresholded and hardened (`perception.decode.harden`), each
forecast reduced to its most likely mode as a point with existence thresholded
at 0.5 (`harden_forecast`).

Checkpoints hold the detector weights under `perception.detector.*`, the
predictor's under `predictor.*`, and the `StackConfig` as JSON (`core.checkpoint`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from core.checkpoint import CheckpointError, load_model_checkpoint, load_weights, save_checkpoint
from core.config import ConfigError, Timing
from perception.decode import POSITION_STD_FLOOR
from perception.model import Perception, PerceptionState
from perception.types import Detections, Tracks
from planning.planner import Planner, checking, remember
from planning.types import Plan
from prediction.model import MapInput, Predictor
from prediction.road import follow_route
from prediction.types import Forecast
from sim.proposals import PreviousPlan
from sim.types import SensorFrame
from stack.config import StackConfig

CHECKPOINT_KIND = "stack"
PERCEPTION_PREFIX = "perception."
PREDICTOR_PREFIX = "predictor."
# Log-weight given to the modes the argmax ablation drops: exp(-30) ~ 1e-13, so the mixture stays
# normalised to float precision while the dropped modes carry no mass.
DROPPED_MODE_LOG_WEIGHT = -30.0


@dataclass(frozen=True)
class StackState:
    """The stack's recurrent state.

    Attributes:
        perception: the detector's frame memory and the tracker's filter.
        plan: the plan chosen at the last full step, world frame (none before the first).
    """

    perception: PerceptionState
    plan: PreviousPlan

    def validate(self) -> StackState:
        self.perception.validate()
        self.plan.validate()
        return self

    def to_flat(self, prefix: str) -> dict[str, Tensor]:
        """Named tensors `<prefix>.frames.*`, `<prefix>.tracker.*`, `<prefix>.plan.*` (the exported graphs' form)."""
        return {**self.perception.to_flat(prefix), **self.plan.to_flat(f"{prefix}.plan")}

    @classmethod
    def from_flat(cls, named: dict[str, Tensor], prefix: str) -> StackState:
        return cls(PerceptionState.from_flat(named, prefix), PreviousPlan.from_flat(named, f"{prefix}.plan"))

    @classmethod
    def flat_names(cls, prefix: str) -> list[str]:
        return PerceptionState.flat_names(prefix) + PreviousPlan.flat_names(f"{prefix}.plan")


@dataclass(frozen=True)
class StackOutput:
    """Everything one step produced, for rendering, debugging and training losses."""

    detections: Detections
    tracks: Tracks
    forecast: Forecast
    plan: Plan
    state: StackState


def harden_forecast(forecast: Forecast) -> Forecast:
    """The argmax ablation of a forecast: the most likely mode only, as a point (the covariance floor),
    existence thresholded at 0.5 and the class one-hot."""
    best = forecast.log_weights.argmax(-1, keepdim=True)  # (B, A, 1)
    modes = torch.arange(forecast.num_modes, device=best.device)
    log_weights = torch.where(modes == best, 0.0, DROPPED_MODE_LOG_WEIGHT).to(forecast.log_weights.dtype)
    eye = torch.eye(2, dtype=forecast.chol.dtype, device=forecast.chol.device)
    one_hot = torch.nn.functional.one_hot(forecast.class_probs.argmax(-1), forecast.class_probs.shape[-1])
    return dataclasses.replace(
        forecast,
        log_weights=log_weights,
        chol=(POSITION_STD_FLOOR * eye).expand_as(forecast.chol),
        existence=(forecast.existence >= 0.5).to(forecast.existence.dtype),
        class_probs=one_hot.to(forecast.class_probs.dtype),
    )


class Stack(nn.Module):
    """See the module docstring."""

    def __init__(self, cfg: StackConfig = StackConfig(), timing: Timing = Timing()):
        super().__init__()
        _check_timing(cfg, timing)
        self.cfg, self.timing = cfg, timing
        self.perception = Perception(dataclasses.replace(cfg.perception, argmax=cfg.argmax), timing)
        self.predictor = Predictor(cfg.predictor)
        self.planner = Planner(cfg.planner, timing, cfg.perception.detector.raster)

    def initial_state(self, frame: SensorFrame) -> StackState:
        """The state at episode start (the first frame repeated, no tracks, no previous plan)."""
        return StackState(self.perception.initial_state(frame), PreviousPlan.none(frame, self.timing))

    def step(self, state: StackState, frame: SensorFrame, sigma: Tensor | float) -> tuple[Plan, StackState]:
        """One step: the plan for `frame` under risk sensitivity `sigma` ([B] or scalar) and the new state."""
        out = self.step_outputs(state, frame, sigma)
        return out.plan, out.state

    def forward(self, state: StackState, frame: SensorFrame, sigma: Tensor) -> tuple[Plan, StackState]:
        return self.step(state, frame, sigma)

    def step_outputs(
        self, state: StackState, frame: SensorFrame, sigma: Tensor | float, noise: tuple[Tensor, Tensor] | None = None
    ) -> StackOutput:
        """`step` with every intermediate distribution; `noise` (see `Planner.forward`) switches the risk
        from forecast modes to samples. The planner checks sigma (it owns it)."""
        _check_frame(frame)
        detections, tracks, perception = self.perception.step(state.perception, frame)
        forecast = self.forecast_frame(tracks, frame)
        plan = self.planner(forecast, frame, sigma, agent_size=tracks.size, noise=noise, previous=state.plan)
        return StackOutput(detections, tracks, forecast, plan, StackState(perception, remember(plan, frame)))

    def perceive(self, state: StackState, frame: SensorFrame) -> StackState:
        """Perception alone (between plans when a caller plans less often than it perceives); the
        previous plan is kept."""
        _check_frame(frame)
        return StackState(self.perception.step(state.perception, frame)[2], state.plan)

    def forecast(
        self, tracks: Tracks, map_raster: Tensor | None, route: Tensor | None = None, lanes: Tensor | None = None,
        lanes_valid: Tensor | None = None,
    ) -> Forecast:  # fmt: skip
        """The predictor's mixture for `tracks` (hardened under the argmax ablation); `map_raster` is the
        frame's ego-frame map `[B, 3, H, W]`, read only by a predictor with a map encoder; `lanes`,
        `lanes_valid` the frame's lane centrelines, read only by a predictor with a lane encoder; `route`
        the frame's route `[B, R, 2]`, along which the modes of agents driving along it bend
        (`prediction.road`, when `StackConfig.follow_route`)."""
        raster = self.cfg.perception.detector.raster
        map_input = MapInput(map_raster if self.cfg.predictor.map_channels else None, raster, lanes, lanes_valid)
        forecast = self.predictor(tracks, map_input)
        if self.cfg.follow_route and route is not None:
            forecast = follow_route(forecast, route, self.timing.sample_dt)
        return harden_forecast(forecast) if self.cfg.argmax else forecast

    def forecast_frame(self, tracks: Tracks, frame: SensorFrame) -> Forecast:
        """`forecast` with everything it reads from `frame`."""
        return self.forecast(tracks, frame.map, frame.route, frame.lanes, frame.lanes_valid)

    def with_argmax(self, argmax: bool = True) -> Stack:
        """The same weights with the ablation switch set (a new module)."""
        other = Stack(dataclasses.replace(self.cfg, argmax=argmax), self.timing)
        other.load_state_dict(self.state_dict())
        return other.to(next(self.parameters()).device).train(self.training)

    # -- checkpoints -----------------------------------------------------
    def weights(self) -> dict[str, Tensor]:
        tensors = {PERCEPTION_PREFIX + k: v for k, v in self.perception.weights().items()}
        tensors.update({PREDICTOR_PREFIX + k: v.detach().contiguous() for k, v in self.predictor.state_dict().items()})
        return tensors

    def save(self, path: str | Path, **meta: Any) -> Path:
        """Weights and config, atomically (`core.checkpoint`)."""
        return save_checkpoint(path, self.weights(), self.cfg.to_dict(), model=CHECKPOINT_KIND, **meta)

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str = "cpu", **changes: Any) -> Stack:
        """A stack from a checkpoint; `changes` replace config fields (e.g. `argmax=True`, `sigma=2.0`)."""
        ckpt, cfg = load_model_checkpoint(path, CHECKPOINT_KIND, StackConfig, device)
        try:
            cfg = dataclasses.replace(cfg, **changes)
        except (ConfigError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {path}: cannot apply {sorted(changes)} to its config ({exc})") from exc
        try:
            stack = cls(cfg).to(device)
        except ConfigError as exc:  # a config that parses but does not fit the Timing (e.g. the tracker's)
            raise CheckpointError(f"checkpoint {path}: {exc}") from exc
        stack.perception.load_weights(ckpt.subset(PERCEPTION_PREFIX), str(path))
        load_weights(stack.predictor, ckpt.subset(PREDICTOR_PREFIX), path, "predictor")
        return stack.eval()

    @classmethod
    def assemble(cls, perception: Perception, predictor: Predictor, **changes: Any) -> Stack:
        """A stack from separately trained modules (their weights are copied)."""
        cfg = StackConfig(perception=perception.cfg, predictor=predictor.cfg, **changes)
        stack = cls(cfg)
        stack.perception.detector.load_state_dict(perception.detector.state_dict())
        stack.predictor.load_state_dict(predictor.state_dict())
        return stack


def _check_frame(frame: SensorFrame) -> None:
    """The frame's contract, before anything reads it: a NaN in `frame.bev` or `frame.ego_pose` is named as
    such, not found three modules later as a non-finite forecast."""
    if checking():
        frame.validate()


def _check_timing(cfg: StackConfig, timing: Timing) -> None:
    p = cfg.predictor
    if p.horizon != timing.horizon_steps or abs(p.dt - timing.sample_dt) > 1e-9:
        raise ConfigError(
            f"StackConfig.predictor: expected horizon {timing.horizon_steps} steps of {timing.sample_dt} s "
            f"(Timing), got {p.horizon} of {p.dt} s"
        )
