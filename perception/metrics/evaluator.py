"""`DetectionEvaluator`: accumulate frames, then compute mAP, calibration, uncertainty and false positives.

    evaluator = DetectionEvaluator(EvaluationConfig())
    for dets, gt, sensor_objects in frames:       # batched [B, ...], any device
        evaluator.update(dets, gt, ghosts=sensor_objects)
    report = evaluator.compute()                  # nested dict of floats

Each `update` matches its frames on their device, vectorised over the batch,
classes and thresholds (see `matching.py`), and keeps only what the metrics
need, as numpy arrays on the CPU.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from perception.calibration import reliability_table
from perception.metrics.average_precision import average_precision
from perception.metrics.config import EvaluationConfig
from perception.metrics.false_positives import GhostTotals, false_positives_per_frame, ghost_totals
from perception.metrics.matching import as_float64, check_inputs, match_checked_frames
from perception.metrics.position import EXPECTED_COVERAGE, gaussian_nll_2d, mahalanobis_squared
from perception.types import CLASS_NAMES, Detections
from sim.types import ObjectList


def _numpy(tensor: Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def _concat(chunks: list[np.ndarray], tail: tuple[int, ...] = (), dtype: type = np.float64) -> np.ndarray:
    return np.concatenate(chunks) if chunks else np.zeros((0, *tail), dtype=dtype)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


class DetectionEvaluator:
    """Accumulates batches of (Detections, ground-truth ObjectList) frames; `compute()` reports."""

    def __init__(self, config: EvaluationConfig = EvaluationConfig()):
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Forget every accumulated frame."""
        thresholds = len(self.config.match_thresholds)
        self.num_frames = 0
        self.num_gt = np.zeros(len(CLASS_NAMES), dtype=np.int64)  # (C,)
        self._class_scores: list[np.ndarray] = []  # (D, C) per update, valid slots only
        self._class_hits: list[np.ndarray] = []  # (D, C, T)
        self._existence: list[np.ndarray] = []  # (D,)
        self._outcome: list[np.ndarray] = []  # (D,)
        self._nll: list[np.ndarray] = []  # (P,) matched pairs
        self._mahalanobis_sq: list[np.ndarray] = []  # (P,)
        self._fp_expected: list[np.ndarray] = []  # (B,) per frame
        self._fp_above: list[np.ndarray] = []
        self._fp_unmatched: list[np.ndarray] = []
        self._ghosts = GhostTotals()
        self._saw_ghosts = False  # the ghost report is None unless some update passed the sensor's objects
        self._hit_tail = (len(CLASS_NAMES), thresholds)

    @torch.no_grad()
    def update(self, dets: Detections, gt: ObjectList, ghosts: ObjectList | None = None) -> None:
        """Add a batch of frames: detections, their ground truth and optionally the object sensor's output."""
        check_inputs(dets, gt, ghosts)
        dets, gt = as_float64(dets, gt)
        matches = match_checked_frames(dets, gt, self.config)
        valid = dets.valid  # (B, N)
        self.num_frames += dets.batch_size
        kinds = gt.kind[matches.gt_counted]  # (G,) counted objects
        self.num_gt += _numpy(torch.bincount(kinds, minlength=len(CLASS_NAMES)))
        self._class_scores.append(_numpy(matches.class_scores[valid]))
        self._class_hits.append(_numpy(matches.class_hits.permute(0, 3, 1, 2)[valid]))
        self._existence.append(_numpy(dets.existence[valid]))
        self._outcome.append(_numpy(matches.outcome[valid]))
        self._add_position_errors(dets, gt, matches.matched_gt)
        fp = false_positives_per_frame(dets.existence, valid, matches.outcome, self.config.count_probability)
        self._fp_expected.append(_numpy(fp.expected))
        self._fp_above.append(_numpy(fp.above))
        self._fp_unmatched.append(_numpy(fp.unmatched))
        if ghosts is not None:
            self._saw_ghosts = True
            self._ghosts = self._ghosts + ghost_totals(dets, matches.outcome, ghosts.to(dets.device), self.config)

    def _add_position_errors(self, dets: Detections, gt: ObjectList, matched_gt: Tensor) -> None:
        frame, slot = (matched_gt >= 0).nonzero(as_tuple=True)  # (P,) each
        target = gt.xy[frame, matched_gt[frame, slot]]  # (P, 2)
        mean, cov = dets.position[frame, slot], dets.position_cov[frame, slot]  # (P, 2), (P, 2, 2)
        self._nll.append(_numpy(gaussian_nll_2d(target, mean, cov)))
        self._mahalanobis_sq.append(_numpy(mahalanobis_squared(target, mean, cov)))

    def compute(self) -> dict:
        """Every metric over the accumulated frames (NaN where there is nothing to measure)."""
        return {
            "num_frames": self.num_frames,
            "num_detections": int(sum(len(e) for e in self._existence)),
            "num_gt": dict(zip(CLASS_NAMES, self.num_gt.tolist(), strict=True)),
            **self._detection_metrics(),
            "calibration": self._calibration(),
            "position": self._position(),
            "false_positives": self._false_positives(),
            "ghosts": self._ghosts.summary() if self._saw_ghosts else None,
        }

    def _detection_metrics(self) -> dict:
        """Per-class, per-threshold nuScenes AP; mAP over the classes with ground truth."""
        scores = _concat(self._class_scores, (len(CLASS_NAMES),))  # (D, C)
        hits = _concat(self._class_hits, self._hit_tail, dtype=bool)  # (D, C, T)
        ap, true_positives = {}, {}
        for c, name in enumerate(CLASS_NAMES):
            ap[name], true_positives[name] = {}, {}
            submitted = scores[:, c] > 0  # (D,) a zero confidence asserts nothing about class c
            for t, threshold in enumerate(self.config.match_thresholds):
                ap[name][threshold] = average_precision(
                    scores[submitted, c],
                    hits[submitted, c, t],
                    int(self.num_gt[c]),
                    self.config.min_recall,
                    self.config.min_precision,
                )
                true_positives[name][threshold] = int(hits[:, c, t].sum())
        per_class = {name: float(np.mean(list(by_threshold.values()))) for name, by_threshold in ap.items()}
        present = [value for value in per_class.values() if not math.isnan(value)]
        return {
            "mAP": float(np.mean(present)) if present else math.nan,
            "ap_per_class": per_class,
            "ap": ap,
            "num_true_positives": true_positives,
        }

    def _calibration(self) -> dict:
        bins = self.config.calibration_bins
        table = reliability_table(_concat(self._existence), _concat(self._outcome, dtype=bool), bins)
        return {"ece": table.expected_calibration_error(), "bins": bins, "reliability": table.as_dict()}

    def _position(self) -> dict:
        d2 = _concat(self._mahalanobis_sq)
        return {
            "num_matched": int(d2.size),
            "nll_mean": _mean(_concat(self._nll)),
            "coverage_1sigma": _mean(d2 <= 1.0),
            "coverage_2sigma": _mean(d2 <= 4.0),
            "expected_1sigma": EXPECTED_COVERAGE[1],
            "expected_2sigma": EXPECTED_COVERAGE[2],
        }

    def _false_positives(self) -> dict:
        unmatched = _concat(self._fp_unmatched, dtype=np.int64)
        expected = _concat(self._fp_expected)
        return {
            "expected_per_frame": _mean(expected),
            "above_probability_per_frame": _mean(_concat(self._fp_above, dtype=np.int64)),
            "probability": self.config.count_probability,
            "unmatched_slots_per_frame": _mean(unmatched),
            "mean_existence": float(expected.sum() / unmatched.sum()) if unmatched.sum() else math.nan,
        }
