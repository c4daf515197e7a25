"""False positives and the detector's response to the sensor's ghosts.

A false positive is a valid detection slot that matched no counted object at
`outcome_threshold` (class-agnostic, see `matching.py`). Since nothing is ever
thresholded, the honest count is the expected one, the sum of the existence
probabilities of those slots; the count above `count_probability` is reported
beside it for reference only.

Sensor ghosts are the object sensor's false objects (`sim.sensors.detect_objects`
entries with `agent_id == -1`). A slot responds to a ghost when it is a false
positive within `ghost_radius` of the ghost's position; a slot near a real
object that it matched is not counted, even if a ghost sits nearby.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

from perception.metrics.config import EvaluationConfig
from perception.metrics.matching import as_float64, center_distances, check_inputs, match_checked_frames
from perception.types import Detections
from sim.types import ObjectList


@dataclass(frozen=True)
class FalsePositiveFrames:
    """Per-frame false positives of a batch.

    Attributes:
        expected: (B,) float, sum of existence over unmatched valid slots.
        above: (B,) long, unmatched valid slots with existence > `count_probability`.
        unmatched: (B,) long, unmatched valid slots.
    """

    expected: Tensor
    above: Tensor
    unmatched: Tensor


def false_positives_per_frame(existence: Tensor, valid: Tensor, outcome: Tensor, count_probability: float):
    """`FalsePositiveFrames` from existence (B, N), valid (B, N) and the match outcome (B, N)."""
    unmatched = valid & ~outcome  # (B, N)
    return FalsePositiveFrames(
        expected=torch.where(unmatched, existence, 0.0).sum(-1),
        above=(unmatched & (existence > count_probability)).sum(-1),
        unmatched=unmatched.sum(-1),
    )


@dataclass(frozen=True)
class GhostTotals:
    """Sums over frames of the detector's response to sensor ghosts; add them up, then `summary()`.

    Attributes:
        ghosts: sensor ghosts (valid slots with `agent_id == -1`).
        responding_slots: false-positive slots within `ghost_radius` of any ghost.
        responding_existence: sum of existence over those slots (each counted once).
        peak_existence: sum over ghosts of the largest existence of a slot responding to it (0 if none).
        confident_ghosts: ghosts with a responding slot above `count_probability`.
        sensor_score: sum of the sensor's own scores of the ghosts, for reference.
    """

    ghosts: int = 0
    responding_slots: int = 0
    responding_existence: float = 0.0
    peak_existence: float = 0.0
    confident_ghosts: int = 0
    sensor_score: float = 0.0

    def __add__(self, other: GhostTotals) -> GhostTotals:
        fields = dataclasses.fields(self)
        return GhostTotals(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields})

    def summary(self) -> dict[str, float]:
        """Means per ghost and per responding slot; NaN where there is nothing to average."""
        per_ghost = (lambda total: total / self.ghosts) if self.ghosts else (lambda total: float("nan"))
        return {
            "num_ghosts": self.ghosts,
            "existence_per_ghost": per_ghost(self.responding_existence),
            "peak_existence_per_ghost": per_ghost(self.peak_existence),
            "fraction_confident": per_ghost(self.confident_ghosts),
            "sensor_score_per_ghost": per_ghost(self.sensor_score),
            "num_responding_slots": self.responding_slots,
            "mean_existence_of_responding_slots": (
                self.responding_existence / self.responding_slots if self.responding_slots else float("nan")
            ),
        }


def ghost_totals(
    dets: Detections, outcome: Tensor, ghosts: ObjectList, config: EvaluationConfig = EvaluationConfig()
) -> GhostTotals:
    """Totals for one batch; `outcome` (B, N) is the class-agnostic match of each slot."""
    is_ghost = ghosts.valid & (ghosts.agent_id == -1)  # (B, G)
    false_positive = dets.valid & ~outcome  # (B, N)
    near = center_distances(dets.position, ghosts.xy.to(dets.position)) < config.ghost_radius  # (B, N, G)
    near = near & is_ghost[:, None, :] & false_positive[:, :, None]
    responding = near.any(dim=-1)  # (B, N)
    response = torch.where(near, dets.existence[..., None], 0.0)  # (B, N, G)
    # A zero row first, so ghosts without a responding slot (and frames with N = 0) peak at 0.
    peak = torch.cat((response.new_zeros(response.shape[0], 1, response.shape[2]), response), dim=1).amax(
        dim=1
    )  # (B, G)
    return GhostTotals(
        ghosts=int(is_ghost.sum()),
        responding_slots=int(responding.sum()),
        responding_existence=float(dets.existence[responding].sum()),
        peak_existence=float(peak[is_ghost].sum()),
        confident_ghosts=int((is_ghost & (peak > config.count_probability)).sum()),
        sensor_score=float(ghosts.score[is_ghost].sum()),
    )


def ghost_report(
    dets: Detections, gt: ObjectList, ghosts: ObjectList, config: EvaluationConfig = EvaluationConfig()
) -> dict[str, float]:
    """How much existence the detector puts near the sensor's ghosts, for one batch of frames.

    Args:
        dets: the detector's output.
        gt: ground truth of the same frames (matched slots are real objects, not ghost responses).
        ghosts: the object sensor's output for the same frames; only `agent_id == -1` slots are used.
    """
    check_inputs(dets, gt, ghosts)
    dets, gt = as_float64(dets, gt)
    outcome = match_checked_frames(dets, gt, config).outcome
    return ghost_totals(dets, outcome, ghosts.to(dets.device), config).summary()
