"""The tracker's recurrent state: an explicit contract passed into and out of `Tracker.step`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from core.contracts import TensorContract, check_simplex, check_spd, spec
from perception.types import STATE_DIM, check_positive
from sim.state import NUM_CLASSES


@dataclass(frozen=True)
class TrackerState(TensorContract):
    """Filter state of A track slots, in the ego frame of the last step.

    A slot holds a track while its existence is > 0; an empty slot holds
    existence 0 and neutral filler (zero mean, identity covariance, uniform
    classes, unit size). The history buffer keeps every tracker step of the
    last `TrackerConfig.buffer_steps` (L), oldest first, so that `Tracks` can be
    sampled exactly `sample_dt` apart at every step.

    Attributes:
        mean: [B, A, 4] float, (x m, y m, vx m/s, vy m/s), ego frame.
        cov: [B, A, 4, 4] float, covariance of `mean`, SI units squared, SPD.
        existence: [B, A] float in [0, 1], probability that the track is a real object.
        class_probs: [B, A, 3] float, (vehicle, pedestrian, cyclist), rows sum to 1.
        size: [B, A, 2] float > 0, box (length, width), m.
        evidence: [B, A] float >= 0, soft count of detections averaged into
            `class_probs` and `size` (capped at `TrackerConfig.attribute_memory`).
        age: [B, A] float >= 0, s since the track in the slot was born.
        history_mean: [B, A, L, 4] float, past posterior means, ego frame of the last step.
        history_cov: [B, A, L, 4, 4] float, their covariances, SPD where `history_valid`.
        history_valid: [B, A, L] bool, the slot held this same track at that step.
        ego_pose: [B, 3] float, world (x m, y m, yaw rad) of the ego centre at the last step.
        steps: [B] long, tracker steps taken (0 before the first).
    """

    mean: Tensor = spec(("B", "A", STATE_DIM))
    cov: Tensor = spec(("B", "A", STATE_DIM, STATE_DIM))
    existence: Tensor = spec(("B", "A"), prob=True)
    class_probs: Tensor = spec(("B", "A", NUM_CLASSES), prob=True)
    size: Tensor = spec(("B", "A", 2), low=0.0)
    evidence: Tensor = spec(("B", "A"), low=0.0)
    age: Tensor = spec(("B", "A"), low=0.0)
    history_mean: Tensor = spec(("B", "A", "L", STATE_DIM))
    history_cov: Tensor = spec(("B", "A", "L", STATE_DIM, STATE_DIM))
    history_valid: Tensor = spec(("B", "A", "L"), "bool")
    ego_pose: Tensor = spec(("B", 3))
    steps: Tensor = spec(("B",), "long", low=0)

    @property
    def num_slots(self) -> int:
        return int(self.existence.shape[1])

    def _check(self, sizes: dict[str, int]) -> None:
        check_spd("TrackerState.cov", self.cov)
        check_spd("TrackerState.history_cov", self.history_cov, self.history_valid)
        check_simplex("TrackerState.class_probs", self.class_probs)
        check_positive("TrackerState.size", self.size, torch.ones_like(self.existence, dtype=torch.bool))

    @classmethod
    def empty(
        cls,
        batch: int,
        slots: int,
        buffer_steps: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> TrackerState:
        """No tracks yet: every slot empty, no history, no step taken."""
        shape = (batch, slots)
        eye = torch.eye(STATE_DIM, device=device, dtype=dtype)
        zeros = lambda *tail: torch.zeros(*shape, *tail, device=device, dtype=dtype)  # noqa: E731
        return cls(
            mean=zeros(STATE_DIM),
            cov=eye.expand(*shape, STATE_DIM, STATE_DIM).contiguous(),
            existence=zeros(),
            class_probs=torch.full((*shape, NUM_CLASSES), 1.0 / NUM_CLASSES, device=device, dtype=dtype),
            size=torch.ones(*shape, 2, device=device, dtype=dtype),
            evidence=zeros(),
            age=zeros(),
            history_mean=zeros(buffer_steps, STATE_DIM),
            history_cov=eye.expand(*shape, buffer_steps, STATE_DIM, STATE_DIM).contiguous(),
            history_valid=torch.zeros(*shape, buffer_steps, dtype=torch.bool, device=device),
            ego_pose=torch.zeros(batch, 3, device=device, dtype=dtype),
            steps=torch.zeros(batch, dtype=torch.long, device=device),
        )
