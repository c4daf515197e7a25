"""Settings of the detection evaluation, with nuScenes' detection values as defaults."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import require

# nuScenes resamples every precision-recall curve at 101 recall points (0 %, 1 %, ... 100 %).
RECALL_POINTS = 101


def _require(cond: bool, name: str, expected: str, value: object) -> None:
    require(cond, "EvaluationConfig", name, expected, value)


@dataclass(frozen=True)
class EvaluationConfig:
    """How detections are matched to ground truth and what is reported.

    Attributes:
        match_thresholds: centre-distance thresholds of the AP matching, m
            (nuScenes: 0.5, 1, 2, 4). A detection matches when strictly closer.
        outcome_threshold: centre-distance threshold, m, of the class-agnostic
            matching that decides whether a detection was real: the outcome of
            the existence calibration, the pairs of the position-uncertainty
            metrics and the false positives all use it.
        require_visible: count only ground truth that is `valid & visible`
            (an occluded object cannot be detected from this frame's raster);
            False counts every valid object.
        min_recall: AP ignores the precision at recalls up to this, nuScenes' 0.1.
        min_precision: AP counts precision above this only, nuScenes' 0.1.
        calibration_bins: equal-width bins of the existence calibration error.
        count_probability: reference threshold for counting false positives and
            confident ghost responses (a report, never applied to the outputs).
        ghost_radius: a detection slot within this distance, m, of a sensor
            ghost responds to that ghost.
    """

    match_thresholds: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    outcome_threshold: float = 2.0
    require_visible: bool = True
    min_recall: float = 0.1
    min_precision: float = 0.1
    calibration_bins: int = 15
    count_probability: float = 0.5
    ghost_radius: float = 2.0

    def __post_init__(self) -> None:
        thresholds = self.match_thresholds
        _require(
            isinstance(thresholds, tuple) and len(thresholds) > 0 and all(t > 0 for t in thresholds),
            "match_thresholds",
            "a non-empty tuple of distances > 0 m",
            thresholds,
        )
        _require(len(set(thresholds)) == len(thresholds), "match_thresholds", "distinct values", thresholds)
        _require(self.outcome_threshold > 0, "outcome_threshold", "> 0 m", self.outcome_threshold)
        _require(0 <= self.min_recall < 1, "min_recall", "in [0, 1)", self.min_recall)
        _require(0 <= self.min_precision < 1, "min_precision", "in [0, 1)", self.min_precision)
        _require(
            isinstance(self.calibration_bins, int) and self.calibration_bins >= 1,
            "calibration_bins",
            "an int >= 1",
            self.calibration_bins,
        )
        _require(0 <= self.count_probability <= 1, "count_probability", "in [0, 1]", self.count_probability)
        _require(self.ghost_radius > 0, "ghost_radius", "> 0 m", self.ghost_radius)
