"""Builders of synthetic detection/ground-truth frames and a literal nuScenes AP reference for the metric tests."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from perception.types import Detections
from sim.state import NUM_CLASSES
from sim.types import ObjectList


def one_hot_probs(kind: Tensor, confidence: float = 0.9) -> Tensor:
    """(B, N, 3) class probabilities putting `confidence` on `kind` (B, N) and the rest evenly elsewhere."""
    rest = (1.0 - confidence) / (NUM_CLASSES - 1)
    probs = torch.full((*kind.shape, NUM_CLASSES), rest)
    return probs.scatter(-1, kind[..., None], confidence)


def make_dets(
    position: Tensor,
    existence: Tensor,
    class_probs: Tensor | None = None,
    cov: Tensor | None = None,
    valid: Tensor | None = None,
) -> Detections:
    """Detections with the given positions (B, N, 2) and existence (B, N); other fields neutral."""
    B, N = existence.shape
    base = Detections.empty(B, N)
    return Detections(
        existence=existence.float(),
        class_probs=base.class_probs if class_probs is None else class_probs.float(),
        position=position.float(),
        position_cov=base.position_cov if cov is None else cov.float(),
        velocity=base.velocity,
        velocity_cov=base.velocity_cov,
        heading=base.heading,
        heading_concentration=base.heading_concentration,
        size=base.size,
        valid=torch.ones(B, N, dtype=torch.bool) if valid is None else valid,
    )


def make_objects(
    xy: Tensor,
    kind: Tensor | None = None,
    valid: Tensor | None = None,
    visible: Tensor | None = None,
    agent_id: Tensor | None = None,
    score: Tensor | None = None,
) -> ObjectList:
    """An ObjectList with centres xy (B, M, 2); by default valid, visible real vehicles."""
    B, M = xy.shape[:2]
    ones = torch.ones(B, M, dtype=torch.bool)
    return ObjectList(
        xy=xy.float(),
        yaw=torch.zeros(B, M),
        velocity=torch.zeros(B, M, 2),
        length=torch.full((B, M), 4.0),
        width=torch.full((B, M), 2.0),
        kind=torch.zeros(B, M, dtype=torch.long) if kind is None else kind,
        score=torch.ones(B, M) if score is None else score.float(),
        visible=ones if visible is None else visible,
        agent_id=torch.arange(M).expand(B, M).clone() if agent_id is None else agent_id,
        valid=ones if valid is None else valid,
    )


def grid_positions(batch: int, count: int, spacing: float = 15.0) -> Tensor:
    """(batch, count, 2) object centres on a grid, far enough apart that no detection can match a neighbour."""
    cols = int(np.ceil(np.sqrt(count)))
    idx = torch.arange(count)
    xy = torch.stack(((idx // cols).float(), (idx % cols).float()), dim=-1) * spacing - spacing
    return xy.expand(batch, count, 2).clone()


def reference_nuscenes_ap(
    frames: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    class_index: int,
    threshold: float,
    min_recall: float = 0.1,
    min_precision: float = 0.1,
) -> float:
    """nuScenes' `accumulate` + `calc_ap`, transcribed loop for loop over plain lists.

    Each frame is (det_xy (N, 2), det_scores (N, C), gt_xy (M, 2), gt_kind (M,)),
    valid entries only. Returns NaN for a class without ground truth.
    """
    npos = sum(int((kind == class_index).sum()) for _, _, _, kind in frames)
    if npos == 0:
        return float("nan")
    # The boxes submitted for the class: positive confidence (see perception/metrics/average_precision.py).
    preds = [
        (f, i) for f, (_, scores, _, _) in enumerate(frames) for i in range(len(scores)) if scores[i, class_index] > 0
    ]
    confs = [frames[f][1][i, class_index] for f, i in preds]
    # nuScenes: sorted((v, i)) reversed.
    sortind = [i for (v, i) in sorted((v, i) for (i, v) in enumerate(confs))][::-1]
    taken, tp, fp = set(), [], []
    for ind in sortind:
        frame, det = preds[ind]
        det_xy, _, gt_xy, gt_kind = frames[frame]
        min_dist, match = np.inf, None
        for g in range(len(gt_xy)):
            if gt_kind[g] == class_index and (frame, g) not in taken:
                dist = float(np.linalg.norm(gt_xy[g] - det_xy[det]))
                if dist < min_dist:
                    min_dist, match = dist, g
        if min_dist < threshold:
            taken.add((frame, match))
            tp.append(1)
            fp.append(0)
        else:
            tp.append(0)
            fp.append(1)
    if sum(tp) == 0:
        precision = np.zeros(101)
    else:
        tp_sum, fp_sum = np.cumsum(tp).astype(float), np.cumsum(fp).astype(float)
        precision = np.interp(np.linspace(0, 1, 101), tp_sum / npos, tp_sum / (fp_sum + tp_sum), right=0)
    prec = precision[round(100 * min_recall) + 1 :] - min_precision
    prec[prec < 0] = 0
    return float(np.mean(prec)) / (1.0 - min_precision)
