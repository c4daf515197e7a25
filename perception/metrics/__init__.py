"""Honest-probability evaluation of detections against ground truth.

* nuScenes detection AP/mAP: centre-distance matching at 0.5, 1, 2, 4 m per
  class, confidence = existence * class probability (`average_precision.py`
  documents exactly what is computed).
* Calibration of existence against the class-agnostic match at 2 m
  (`perception.calibration` holds ECE and temperature scaling).
* Position covariances: Gaussian NLL and 1-/2-sigma coverage of matched objects.
* False positives as expected counts, and the response to the sensor's ghosts.

`DetectionEvaluator` accumulates batches of frames and `compute()`s all of it.
"""

from perception.metrics.average_precision import ap_from_precision, average_precision, interpolated_precision
from perception.metrics.config import RECALL_POINTS, EvaluationConfig
from perception.metrics.evaluator import DetectionEvaluator
from perception.metrics.false_positives import (
    FalsePositiveFrames,
    GhostTotals,
    false_positives_per_frame,
    ghost_report,
    ghost_totals,
)
from perception.metrics.matching import (
    FrameMatches,
    center_distances,
    counted_ground_truth,
    existence_outcomes,
    greedy_match,
    match_frames,
)
from perception.metrics.position import EXPECTED_COVERAGE, gaussian_nll_2d, mahalanobis_squared

__all__ = [
    "EXPECTED_COVERAGE",
    "RECALL_POINTS",
    "DetectionEvaluator",
    "EvaluationConfig",
    "FalsePositiveFrames",
    "FrameMatches",
    "GhostTotals",
    "ap_from_precision",
    "average_precision",
    "center_distances",
    "counted_ground_truth",
    "existence_outcomes",
    "false_positives_per_frame",
    "gaussian_nll_2d",
    "ghost_report",
    "ghost_totals",
    "greedy_match",
    "interpolated_precision",
    "mahalanobis_squared",
    "match_frames",
]
