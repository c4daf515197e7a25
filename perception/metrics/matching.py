"""Greedy centre-distance matching of detections to ground truth, as nuScenes does it.

nuScenes (`nuscenes/eval/detection/algo.py`, `accumulate`) walks all detections
of a class over the whole evaluation set in decreasing confidence; each takes the
closest ground-truth object of that class in its own frame that no earlier
detection took, and is a true positive when that distance is strictly below the
threshold. A detection's fate depends only on the detections before it in its
own frame, so matching every frame alone, in the same order, gives the same
true positives; `greedy_match` does that for a batch of frames and many
(class, threshold) problems at once, stepping through the N slots by rank.
Ties in confidence keep slot order (a stable sort), within a frame and across
the set, so both orders agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from perception.metrics.config import EvaluationConfig
from perception.types import Detections
from sim.state import NUM_CLASSES
from sim.types import ObjectList


def center_distances(det_xy: Tensor, gt_xy: Tensor) -> Tensor:
    """(B, N, M) Euclidean distances, m, between detection centres (B, N, 2) and object centres (B, M, 2)."""
    return torch.linalg.vector_norm(det_xy[:, :, None, :] - gt_xy[:, None, :, :], dim=-1)


def greedy_match(distance: Tensor, score: Tensor, det_active: Tensor, gt_eligible: Tensor, threshold: Tensor) -> Tensor:
    """Solve K greedy matching problems per frame, in decreasing `score`.

    Args:
        distance: (B, N, M) detection-to-object distances, m.
        score: (B, K, N) confidence of each detection in problem k.
        det_active: (B, K, N) bool, detections taking part in problem k.
        gt_eligible: (B, K, M) bool, objects that can be matched in problem k.
        threshold: (K,) a match needs a distance strictly below it, m.

    Returns:
        (B, K, N) long: index of the object each detection took, -1 for none.
    """
    B, K, N = score.shape
    M = distance.shape[-1]
    matched = torch.full((B, K, N), -1, dtype=torch.long, device=score.device)
    if N == 0 or M == 0:
        return matched
    # Inactive slots sort last and never match.
    order = torch.sort(score.masked_fill(~det_active, -torch.inf), dim=-1, descending=True, stable=True).indices
    ordered_active = det_active.gather(-1, order)  # (B, K, N)
    ordered_distance = distance[:, None].expand(B, K, N, M).gather(2, order[..., None].expand(B, K, N, M))
    free = gt_eligible.clone()  # (B, K, M)
    taken_by_rank = []
    for rank in range(N):
        candidate = ordered_distance[:, :, rank].masked_fill(~free, torch.inf)  # (B, K, M)
        best_distance, best = candidate.min(dim=-1)  # (B, K)
        hit = ordered_active[:, :, rank] & (best_distance < threshold)
        free = free & ~(F.one_hot(best, M).bool() & hit[..., None])
        taken_by_rank.append(torch.where(hit, best, -1))
    return matched.scatter(-1, order, torch.stack(taken_by_rank, dim=-1))


@dataclass(frozen=True)
class FrameMatches:
    """The matches of one batch of frames.

    Attributes:
        class_scores: (B, N, C) float, existence * class probability: the AP confidence.
        class_hits: (B, C, T, N) bool, slot n is a true positive for class c at
            `match_thresholds[t]`.
        matched_gt: (B, N) long, class-agnostic match at `outcome_threshold`
            in decreasing existence, -1 for none.
        gt_counted: (B, M) bool, the ground truth that counts.
    """

    class_scores: Tensor
    class_hits: Tensor
    matched_gt: Tensor
    gt_counted: Tensor

    @property
    def outcome(self) -> Tensor:
        """(B, N) bool, the detection matched a counted object: the existence outcome."""
        return self.matched_gt >= 0


def check_inputs(dets: Detections, gt: ObjectList, ghosts: ObjectList | None = None) -> None:
    """Validate the contracts and that they describe the same frames; raise ValueError naming the field."""
    if not isinstance(dets, Detections):
        raise TypeError(f"dets: expected perception.types.Detections, got {type(dets).__name__}")
    for name, objects in (("gt", gt), ("ghosts", ghosts)):
        if objects is None:
            continue
        if not isinstance(objects, ObjectList):
            raise TypeError(f"{name}: expected sim.types.ObjectList, got {type(objects).__name__}")
        if objects.batch_size != dets.batch_size:
            raise ValueError(
                f"{name}.valid: batch size {objects.batch_size} differs from dets.valid's {dets.batch_size}"
            )
        objects.validate()
    dets.validate()


def counted_ground_truth(gt: ObjectList, config: EvaluationConfig) -> Tensor:
    """(B, M) bool: valid objects, and visible ones only when `config.require_visible`."""
    return gt.valid & gt.visible if config.require_visible else gt.valid


def as_float64(dets: Detections, gt: ObjectList) -> tuple[Detections, ObjectList]:
    """Both contracts in float64 on the detections' device: metrics should not inherit half precision."""
    return dets.to(dtype=torch.float64), gt.to(device=dets.device, dtype=torch.float64)


def match_frames(dets: Detections, gt: ObjectList, config: EvaluationConfig = EvaluationConfig()) -> FrameMatches:
    """Match a batch of frames for every (class, AP threshold) and class-agnostically at the outcome threshold."""
    check_inputs(dets, gt)
    return match_checked_frames(*as_float64(dets, gt), config)


def match_checked_frames(dets: Detections, gt: ObjectList, config: EvaluationConfig) -> FrameMatches:
    """`match_frames` without validation, for callers that already ran `check_inputs`."""
    B, N = dets.valid.shape
    C, T = NUM_CLASSES, len(config.match_thresholds)
    counted = counted_ground_truth(gt, config)  # (B, M)
    class_scores = dets.existence[..., None] * dets.class_probs  # (B, N, C)
    # Problem k = c * T + t matches class c at threshold t; the last one is class-agnostic.
    score = torch.cat((class_scores.transpose(1, 2).repeat_interleave(T, dim=1), dets.existence[:, None]), dim=1)
    classes = torch.arange(C, device=dets.device)
    of_class = counted[:, None] & (gt.kind[:, None] == classes[None, :, None])  # (B, C, M)
    eligible = torch.cat((of_class.repeat_interleave(T, dim=1), counted[:, None]), dim=1)  # (B, C*T+1, M)
    thresholds = config.match_thresholds * C + (config.outcome_threshold,)  # (C*T+1,) in problem order
    threshold = torch.tensor(thresholds, dtype=torch.float64, device=dets.device)
    # A slot with zero confidence for a class is no detection of it (nuScenes only sees submitted boxes).
    active = dets.valid[:, None] & torch.cat((score[:, :-1] > 0, torch.ones_like(score[:, -1:], dtype=torch.bool)), 1)
    matched = greedy_match(center_distances(dets.position, gt.xy), score, active, eligible, threshold)
    return FrameMatches(
        class_scores=class_scores,
        class_hits=(matched[:, :-1] >= 0).reshape(B, C, T, N),
        matched_gt=matched[:, -1],
        gt_counted=counted,
    )


def existence_outcomes(dets: Detections, gt: ObjectList, config: EvaluationConfig = EvaluationConfig()) -> Tensor:
    """(B, N) bool, each valid slot matched a counted object at `outcome_threshold` (false for empty slots).

    These are the labels for `perception.calibration.fit_temperature` on validation frames.
    """
    return match_frames(dets, gt, config).outcome
