"""Detection AP as nuScenes computes it: matching, known answers, a literal reference, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from core.config import ConfigError
from perception.metrics import (
    DetectionEvaluator,
    EvaluationConfig,
    average_precision,
    existence_outcomes,
    greedy_match,
    interpolated_precision,
)
from perception.types import CLASS_NAMES
from sim.state import NUM_CLASSES
from tests.perception.metric_frames import (
    grid_positions,
    make_dets,
    make_objects,
    one_hot_probs,
    reference_nuscenes_ap,
)
from tests.strategies import SETTINGS, generator

THRESHOLDS = EvaluationConfig().match_thresholds


def evaluate(dets, gt, config: EvaluationConfig = EvaluationConfig(), **kwargs) -> dict:
    evaluator = DetectionEvaluator(config)
    evaluator.update(dets, gt, **kwargs)
    return evaluator.compute()


def labelled_frames(batch: int = 6, count: int = 6, seed: int = 0):
    """Objects of every class on a grid, and detections exactly on them with the right class."""
    gen = torch.Generator().manual_seed(seed)
    xy = grid_positions(batch, count)
    kind = torch.randint(0, NUM_CLASSES, (batch, count), generator=gen)
    kind[0, :NUM_CLASSES] = torch.arange(NUM_CLASSES)  # every class present
    existence = 0.5 + 0.5 * torch.rand(batch, count, generator=gen)
    return xy, kind, existence


def test_perfect_detections_score_one() -> None:
    xy, kind, existence = labelled_frames()
    report = evaluate(make_dets(xy, existence, one_hot_probs(kind, 1.0)), make_objects(xy, kind))
    assert report["mAP"] == pytest.approx(1.0)
    for name in CLASS_NAMES:
        assert all(ap == pytest.approx(1.0) for ap in report["ap"][name].values())
    assert sum(report["num_gt"].values()) == xy.shape[0] * xy.shape[1]


def test_soft_class_probabilities_cost_only_the_full_recall_point() -> None:
    # Each object's slot is also a 0.05-confidence candidate of the two other classes: false
    # positives ranked after every true positive, so only the grid point at recall 1 sees them
    # (nuScenes' np.interp takes the last of the repeated recall-1 points).
    xy, kind, existence = labelled_frames()
    report = evaluate(make_dets(xy, existence, one_hot_probs(kind, 0.9)), make_objects(xy, kind))
    slots = xy.shape[0] * xy.shape[1]
    for name in CLASS_NAMES:
        final_precision = report["num_gt"][name] / slots
        expected = (89 + max(final_precision - 0.1, 0) / 0.9) / 90
        assert report["ap_per_class"][name] == pytest.approx(expected)


def test_detections_shifted_by_one_and_a_half_metres() -> None:
    xy, kind, existence = labelled_frames(seed=1)
    angle = torch.rand(xy.shape[:2], generator=torch.Generator().manual_seed(2)) * 2 * math.pi
    shifted = xy + 1.5 * torch.stack((angle.cos(), angle.sin()), dim=-1)
    report = evaluate(make_dets(shifted, existence, one_hot_probs(kind, 1.0)), make_objects(xy, kind))
    for name in CLASS_NAMES:
        assert report["ap"][name] == pytest.approx({0.5: 0.0, 1.0: 0.0, 2.0: 1.0, 4.0: 1.0})
    assert report["mAP"] == pytest.approx(0.5)


def test_random_confidences_give_the_base_rate() -> None:
    # Per frame 4 objects each detected exactly, plus 4 detections far from everything:
    # precision stays near 0.5 at every recall, and nuScenes AP of a flat precision p is (p - 0.1) / 0.9.
    B, M = 400, 4
    gen = torch.Generator().manual_seed(3)
    xy = grid_positions(B, M)
    ghosts = torch.full((B, M, 2), 200.0) + torch.rand(B, M, 2, generator=gen) * 50
    dets = make_dets(
        torch.cat((xy, ghosts), 1),
        torch.rand(B, 2 * M, generator=gen),
        one_hot_probs(torch.zeros(B, 2 * M, dtype=torch.long), 1.0),
    )
    report = evaluate(dets, make_objects(xy))
    for ap in report["ap"]["vehicle"].values():
        assert ap == pytest.approx((0.5 - 0.1) / 0.9, abs=0.04)


@st.composite
def random_frames(draw: st.DrawFn):
    gen = generator(draw)
    B, N, M = draw(st.integers(1, 4)), draw(st.integers(0, 7)), draw(st.integers(0, 6))
    det_xy = torch.rand(B, N, 2, generator=gen) * 8.0
    gt_xy = torch.rand(B, M, 2, generator=gen) * 8.0
    existence = torch.rand(B, N, generator=gen)
    class_probs = torch.softmax(2 * torch.randn(B, N, NUM_CLASSES, generator=gen), -1)
    valid = torch.rand(B, N, generator=gen) < 0.8
    kind = torch.randint(0, NUM_CLASSES, (B, M), generator=gen)
    gt_valid = torch.rand(B, M, generator=gen) < 0.85
    visible = torch.rand(B, M, generator=gen) < 0.8
    return make_dets(det_xy, existence, class_probs, valid=valid), make_objects(gt_xy, kind, gt_valid, visible)


@SETTINGS
@given(frames=st.lists(random_frames(), min_size=1, max_size=3), require_visible=st.booleans())
def test_matches_a_literal_transcription_of_nuscenes(frames, require_visible: bool) -> None:
    config = EvaluationConfig(require_visible=require_visible)
    evaluator = DetectionEvaluator(config)
    plain = []
    for dets, gt in frames:
        evaluator.update(dets, gt)
        counted = gt.valid & gt.visible if require_visible else gt.valid
        scores = (dets.existence[..., None] * dets.class_probs).double()
        for b in range(dets.batch_size):
            keep = counted[b]
            det_xy = dets.position[b][dets.valid[b]].numpy()
            plain.append((det_xy, scores[b][dets.valid[b]].numpy(), gt.xy[b][keep].numpy(), gt.kind[b][keep].numpy()))
    report = evaluator.compute()
    for c, name in enumerate(CLASS_NAMES):
        for threshold in THRESHOLDS:
            expected = reference_nuscenes_ap(plain, c, threshold)
            assert report["ap"][name][threshold] == pytest.approx(expected, nan_ok=True, abs=1e-9)


def test_greedy_matching_lets_the_most_confident_take_the_closest() -> None:
    # Object A at 0, object B at 1.8 m. The confident detection sits at 0.9 (closest to A by a hair);
    # it takes A, so the weaker detection at 0.1 can only take B at 1.7 m: a match at 2 m, none at 1 m.
    distance = torch.tensor([[[0.9, 0.9001], [0.1, 1.7]]])  # (1, N=2, M=2)
    score = torch.tensor([[[0.9, 0.2], [0.9, 0.2]]])  # (1, K=2, N)
    active = torch.ones(1, 2, 2, dtype=torch.bool)
    eligible = torch.ones(1, 2, 2, dtype=torch.bool)
    matched = greedy_match(distance, score, active, eligible, torch.tensor([1.0, 2.0]))
    assert matched.tolist() == [[[0, -1], [0, 1]]]


def test_classes_without_ground_truth_are_excluded() -> None:
    xy, _, existence = labelled_frames()
    kind = torch.zeros(xy.shape[:2], dtype=torch.long)  # only vehicles
    probs = torch.tensor([0.6, 0.3, 0.1]).expand(*xy.shape[:2], 3)
    report = evaluate(make_dets(xy, existence, probs), make_objects(xy, kind))
    assert math.isnan(report["ap_per_class"]["pedestrian"]) and math.isnan(report["ap_per_class"]["cyclist"])
    assert report["num_gt"]["pedestrian"] == 0
    assert report["mAP"] == pytest.approx(report["ap_per_class"]["vehicle"]) == pytest.approx(1.0)


def test_empty_frames() -> None:
    xy = grid_positions(2, 3)
    no_dets = make_dets(torch.zeros(2, 0, 2), torch.zeros(2, 0))
    report = evaluate(no_dets, make_objects(xy))
    assert report["ap"]["vehicle"] == {t: 0.0 for t in THRESHOLDS}
    assert report["num_detections"] == 0 and math.isnan(report["calibration"]["ece"])
    assert math.isnan(report["false_positives"]["mean_existence"])

    no_gt = make_objects(torch.zeros(2, 0, 2))
    report = evaluate(make_dets(xy, torch.full((2, 3), 0.7)), no_gt)
    assert math.isnan(report["mAP"])
    assert report["false_positives"]["expected_per_frame"] == pytest.approx(2.1)
    assert report["position"]["num_matched"] == 0 and math.isnan(report["position"]["nll_mean"])

    all_invalid = make_dets(xy, torch.full((2, 3), 0.7), valid=torch.zeros(2, 3, dtype=torch.bool))
    masked_gt = make_objects(xy, valid=torch.zeros(2, 3, dtype=torch.bool))
    report = evaluate(all_invalid, masked_gt)
    assert report["num_detections"] == 0 and math.isnan(report["mAP"])

    untouched = DetectionEvaluator().compute()
    assert untouched["num_frames"] == 0 and math.isnan(untouched["mAP"]) and untouched["ghosts"] is None


def test_occluded_objects_count_only_when_asked() -> None:
    xy = grid_positions(1, 4)
    visible = torch.tensor([[True, True, True, False]])
    dets = make_dets(xy[:, :3], torch.full((1, 3), 0.9), one_hot_probs(torch.zeros(1, 3, dtype=torch.long)))
    gt = make_objects(xy, visible=visible)
    assert evaluate(dets, gt)["ap"]["vehicle"][2.0] == pytest.approx(1.0)
    everything = evaluate(dets, gt, EvaluationConfig(require_visible=False))
    assert everything["num_gt"]["vehicle"] == 4
    # Recall stops at 0.75: grid points 0.11 .. 0.75 of 0.11 .. 1.0 keep precision 1.
    assert everything["ap"]["vehicle"][2.0] == pytest.approx(65 / 90)


def test_accumulating_batches_equals_one_batch() -> None:
    xy, kind, existence = labelled_frames(batch=6, seed=4)
    noise = torch.randn(xy.shape, generator=torch.Generator().manual_seed(5))
    dets = make_dets(xy + noise, existence, one_hot_probs(kind, 0.7))
    gt = make_objects(xy, kind)
    split = DetectionEvaluator()
    split.update(dets.index(slice(0, 2)), gt.index(slice(0, 2)))
    split.update(dets.index(slice(2, 6)), gt.index(slice(2, 6)))
    assert flatten(split.compute()) == pytest.approx(flatten(evaluate(dets, gt)), nan_ok=True)


def flatten(report: dict, prefix: str = "") -> dict[str, float]:
    """Nested report -> {"ap.vehicle.2.0": value}, numbers only, for approximate comparison."""
    flat = {}
    for key, value in report.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list):
            flat.update({f"{name}.{i}": v for i, v in enumerate(value)})
        elif value is not None:
            flat[name] = value
    return flat


def test_existence_outcomes_mark_matches_within_two_metres_any_class() -> None:
    gt = make_objects(torch.tensor([[[0.0, 0.0], [20.0, 0.0]]]), kind=torch.tensor([[1, 2]]))
    position = torch.tensor([[[1.9, 0.0], [20.0, 2.1], [0.5, 0.0]]])
    dets = make_dets(position, torch.tensor([[0.9, 0.8, 0.3]]), one_hot_probs(torch.zeros(1, 3, dtype=torch.long)))
    # The confident slot at 1.9 m takes object 0 first; the 0.3 slot finds it taken.
    assert existence_outcomes(dets, gt).tolist() == [[True, False, False]]


def test_interpolation_follows_nuscenes() -> None:
    # TP, FP, TP with 2 objects: (recall, precision) = (0.5, 1), (0.5, 0.5), (1, 2/3).
    precision = interpolated_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 2)
    grid = np.linspace(0, 1, 101)
    np.testing.assert_allclose(precision, np.interp(grid, [0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3], right=0))
    assert math.isnan(average_precision(np.zeros(0), np.zeros(0, dtype=bool), 0))
    assert average_precision(np.array([0.5]), np.array([False]), 3) == 0.0


def test_config_and_input_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="match_thresholds"):
        EvaluationConfig(match_thresholds=(1.0, -2.0))
    with pytest.raises(ConfigError, match="min_precision"):
        EvaluationConfig(min_precision=1.0)
    with pytest.raises(ConfigError, match="calibration_bins"):
        EvaluationConfig(calibration_bins=0)
    xy = grid_positions(2, 3)
    with pytest.raises(ValueError, match="gt.valid: batch size 1"):
        DetectionEvaluator().update(make_dets(xy, torch.full((2, 3), 0.5)), make_objects(xy[:1]))
    with pytest.raises(ValueError, match="Detections.existence"):
        DetectionEvaluator().update(make_dets(xy, torch.full((2, 3), 1.5)), make_objects(xy))
