"""Contracts owned by perception: per-frame `Detections` and tracked `Tracks`.

Everything is in the ego frame at the current time (x forward, y left, yaw
counter-clockwise), SI units. Class probabilities follow `sim.state.AgentKind`
order: vehicle, pedestrian, cyclist. Slots are fixed maxima; a `valid` mask
marks the ones in use, and value checks apply to valid slots only, so empty
slots may hold any finite filler.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core.contracts import ContractError, TensorContract, check_simplex, check_spd, spec
from sim.state import NUM_CLASSES

CLASS_NAMES = ("vehicle", "pedestrian", "cyclist")
STATE_DIM = 4
# Named slices into `Tracks.state` (x, y, vx, vy), so callers never use magic indices.
STATE_POS = slice(0, 2)
STATE_VEL = slice(2, 4)


def check_positive(where: str, values: Tensor, mask: Tensor) -> None:
    """Raise unless `values [*mask.shape, ...]` is > 0 wherever `mask` is true."""
    in_use = mask.reshape(mask.shape + (1,) * (values.dim() - mask.dim())).expand_as(values)
    bad = (values <= 0) & in_use
    if bool(bad.any()):
        raise ContractError(f"{where}: expected values > 0, min is {float(values[bad].min()):.6g}")


def _eye(shape: tuple[int, ...], d: int, device: torch.device | str, dtype: torch.dtype) -> Tensor:
    return torch.eye(d, device=device, dtype=dtype).expand(*shape, d, d).contiguous()


def _uniform_classes(shape: tuple[int, ...], device: torch.device | str, dtype: torch.dtype) -> Tensor:
    return torch.full((*shape, NUM_CLASSES), 1.0 / NUM_CLASSES, device=device, dtype=dtype)


@dataclass(frozen=True)
class Detections(TensorContract):
    """Objects detected in one frame; slot n of episode b is in use iff `valid`.

    Attributes:
        existence: [B, N] float in [0, 1], probability that the object is real
            (not a ghost). Never thresholded: downstream weighs by it.
        class_probs: [B, N, 3] float in [0, 1], probabilities of (vehicle,
            pedestrian, cyclist); each valid row sums to 1.
        position: [B, N, 2] float, mean box centre, m, ego frame.
        position_cov: [B, N, 2, 2] float, covariance of `position`, m^2,
            symmetric positive definite for valid slots.
        velocity: [B, N, 2] float, mean absolute velocity, m/s, ego frame axes.
        velocity_cov: [B, N, 2, 2] float, covariance of `velocity`, (m/s)^2,
            symmetric positive definite for valid slots.
        heading: [B, N] float, mean heading (von Mises location), rad, ego frame.
        heading_concentration: [B, N] float >= 0, von Mises concentration kappa,
            dimensionless (about 1 / variance in rad^2 when large; 0 = heading
            unknown).
        size: [B, N, 2] float > 0, box (length, width), m.
        valid: [B, N] bool, slot in use.
    """

    existence: Tensor = spec(("B", "N"), prob=True)
    class_probs: Tensor = spec(("B", "N", NUM_CLASSES), prob=True)
    position: Tensor = spec(("B", "N", 2))
    position_cov: Tensor = spec(("B", "N", 2, 2))
    velocity: Tensor = spec(("B", "N", 2))
    velocity_cov: Tensor = spec(("B", "N", 2, 2))
    heading: Tensor = spec(("B", "N"))
    heading_concentration: Tensor = spec(("B", "N"), low=0.0)
    size: Tensor = spec(("B", "N", 2), low=0.0)
    valid: Tensor = spec(("B", "N"), "bool")

    MASK_FIELD = "valid"

    @property
    def num_slots(self) -> int:
        return int(self.valid.shape[1])

    def _check(self, sizes: dict[str, int]) -> None:
        check_simplex("Detections.class_probs", self.class_probs, self.valid)
        check_spd("Detections.position_cov", self.position_cov, self.valid)
        check_spd("Detections.velocity_cov", self.velocity_cov, self.valid)
        check_positive("Detections.size", self.size, self.valid)

    @classmethod
    def empty(
        cls,
        batch: int,
        slots: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Detections:
        """All slots invalid, filled with values that pass `validate()` even if marked valid."""
        shape = (batch, slots)
        zeros = lambda *tail: torch.zeros(*shape, *tail, device=device, dtype=dtype)  # noqa: E731
        return cls(
            existence=zeros(),
            class_probs=_uniform_classes(shape, device, dtype),
            position=zeros(2),
            position_cov=_eye(shape, 2, device, dtype),
            velocity=zeros(2),
            velocity_cov=_eye(shape, 2, device, dtype),
            heading=zeros(),
            heading_concentration=zeros(),
            size=torch.ones(*shape, 2, device=device, dtype=dtype),
            valid=torch.zeros(shape, dtype=torch.bool, device=device),
        )


@dataclass(frozen=True)
class Tracks(TensorContract):
    """Tracked agents with their recent history, re-expressed in the current ego frame.

    History step H-1 is the current step; step h is `(H - 1 - h) * Timing.sample_dt`
    seconds in the past. Past states are transformed into the ego frame of the
    current time, so a static object has the same position at every step.

    Attributes:
        state: [B, A, H, 4] float, mean (x m, y m, vx m/s, vy m/s), ego frame at
            the current time; read with `STATE_POS` / `STATE_VEL`.
        state_cov: [B, A, H, 4, 4] float, covariance of `state`, SI units
            squared; symmetric positive definite where `step_valid & valid`.
        existence: [B, A] float in [0, 1], probability that the agent is real.
        class_probs: [B, A, 3] float in [0, 1], (vehicle, pedestrian, cyclist);
            each valid row sums to 1.
        size: [B, A, 2] float > 0, box (length, width), m.
        step_valid: [B, A, H] bool, the agent was observed at that history step.
        valid: [B, A] bool, slot holds a track.
    """

    state: Tensor = spec(("B", "A", "H", STATE_DIM))
    state_cov: Tensor = spec(("B", "A", "H", STATE_DIM, STATE_DIM))
    existence: Tensor = spec(("B", "A"), prob=True)
    class_probs: Tensor = spec(("B", "A", NUM_CLASSES), prob=True)
    size: Tensor = spec(("B", "A", 2), low=0.0)
    step_valid: Tensor = spec(("B", "A", "H"), "bool")
    valid: Tensor = spec(("B", "A"), "bool")

    MASK_FIELD = "valid"

    @property
    def num_agents(self) -> int:
        return int(self.valid.shape[1])

    @property
    def history_steps(self) -> int:
        return int(self.step_valid.shape[2])

    @property
    def current(self) -> Tensor:
        """[B, A, 4] float, state mean at the current step (H-1)."""
        return self.state[:, :, -1]

    @property
    def current_cov(self) -> Tensor:
        """[B, A, 4, 4] float, state covariance at the current step (H-1)."""
        return self.state_cov[:, :, -1]

    @property
    def observed(self) -> Tensor:
        """[B, A, H] bool, `step_valid & valid`: the steps whose values are meaningful."""
        return self.step_valid & self.valid.unsqueeze(-1)

    def _check(self, sizes: dict[str, int]) -> None:
        check_spd("Tracks.state_cov", self.state_cov, self.observed)
        check_simplex("Tracks.class_probs", self.class_probs, self.valid)
        check_positive("Tracks.size", self.size, self.valid)

    @classmethod
    def empty(
        cls,
        batch: int,
        agents: int,
        history: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Tracks:
        """No tracks: every slot and step invalid, with identity covariances."""
        shape = (batch, agents)
        return cls(
            state=torch.zeros(*shape, history, STATE_DIM, device=device, dtype=dtype),
            state_cov=_eye((*shape, history), STATE_DIM, device, dtype),
            existence=torch.zeros(shape, device=device, dtype=dtype),
            class_probs=_uniform_classes(shape, device, dtype),
            size=torch.ones(*shape, 2, device=device, dtype=dtype),
            step_valid=torch.zeros(*shape, history, dtype=torch.bool, device=device),
            valid=torch.zeros(shape, dtype=torch.bool, device=device),
        )
