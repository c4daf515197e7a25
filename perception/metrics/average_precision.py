"""Average precision exactly as nuScenes computes it (`nuscenes/eval/detection/algo.py`).

For one class and one distance threshold, over the whole evaluation set:

0. The detections of class c are the valid slots whose confidence
   existence * class_probs[c] is positive: every slot is a candidate of every
   class it gives any probability to, weighted by it (nuScenes sees one class
   per submitted box; a zero confidence submits nothing).
1. Sort the detections by confidence, decreasing (stable: ties keep the order
   in which they were accumulated, frame by frame, slot by slot).
2. Cumulative true and false positives give precision `tp / (tp + fp)` and
   recall `tp / num_gt` after each detection.
3. Resample precision at 101 recalls 0, 0.01, ..., 1 with `np.interp(grid,
   recall, precision, right=0)`: linear interpolation between the raw points,
   the first raw precision below the first recall, and 0 beyond the highest
   recall reached. There is no monotone "envelope" (unlike VOC/COCO). Where
   a recall value repeats (false positives in between), `np.interp` takes the
   last of the repeated points, so false positives ranked after the last true
   positive lower the precision at the highest recall reached; with soft class
   probabilities a perfect detector therefore scores slightly below 1.
   A class with ground truth but no true positive has all-zero precision.
4. `calc_ap`: drop the grid points up to and including `min_recall` (indices
   0 .. round(100 * min_recall)), subtract `min_precision`, clip at 0, take
   the mean and divide by `1 - min_precision`. This is the normalised area of
   the curve above `min_precision` for recall above `min_recall`, so a perfect
   detector scores 1 and a constant precision p scores max(p - 0.1, 0) / 0.9.

A class with no ground truth in the set gets NaN (nuScenes would score it 0;
here it is excluded from the mean instead).
"""

from __future__ import annotations

import math

import numpy as np

from perception.metrics.config import RECALL_POINTS


def interpolated_precision(scores: np.ndarray, is_tp: np.ndarray, num_gt: int) -> np.ndarray:
    """(101,) precision at recalls 0, 0.01, ..., 1 (steps 1-3 above).

    Args:
        scores: (D,) confidences of all detections of the class.
        is_tp: (D,) bool, which of them matched.
        num_gt: ground-truth objects of the class, > 0.
    """
    if num_gt <= 0:
        raise ValueError(f"num_gt: expected > 0 ground-truth objects, got {num_gt}")
    if scores.shape != is_tp.shape or scores.ndim != 1:
        raise ValueError(f"scores, is_tp: expected equal 1-D shapes, got {scores.shape} and {is_tp.shape}")
    if not is_tp.any():
        return np.zeros(RECALL_POINTS)
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(is_tp[order]).astype(np.float64)  # (D,)
    fp = np.cumsum(~is_tp[order]).astype(np.float64)
    precision = tp / (tp + fp)
    recall = tp / float(num_gt)
    return np.interp(np.linspace(0.0, 1.0, RECALL_POINTS), recall, precision, right=0)


def ap_from_precision(precision: np.ndarray, min_recall: float, min_precision: float) -> float:
    """nuScenes' `calc_ap` on a (101,) resampled precision curve (step 4 above)."""
    kept = precision[round((RECALL_POINTS - 1) * min_recall) + 1 :] - min_precision
    return float(np.mean(np.clip(kept, 0.0, None))) / (1.0 - min_precision)


def average_precision(
    scores: np.ndarray, is_tp: np.ndarray, num_gt: int, min_recall: float = 0.1, min_precision: float = 0.1
) -> float:
    """nuScenes AP of one class at one threshold; NaN when the class has no ground truth."""
    if num_gt == 0:
        return math.nan
    return ap_from_precision(interpolated_precision(scores, is_tp, num_gt), min_recall, min_precision)
