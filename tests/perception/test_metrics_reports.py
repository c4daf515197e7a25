"""Position-uncertainty, false-positive and ghost reports of the detection evaluation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from perception.metrics import (
    EXPECTED_COVERAGE,
    DetectionEvaluator,
    EvaluationConfig,
    gaussian_nll_2d,
    ghost_report,
    mahalanobis_squared,
)
from tests.perception.metric_frames import grid_positions, make_dets, make_objects


def random_spd(gen: torch.Generator, shape: tuple[int, ...], scale: float) -> torch.Tensor:
    a = torch.randn(*shape, 2, 2, generator=gen, dtype=torch.float64) * scale
    return a @ a.transpose(-1, -2) + 0.05 * scale**2 * torch.eye(2, dtype=torch.float64)


def test_nll_matches_scipy() -> None:
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(50, 2, generator=gen, dtype=torch.float64) * 3
    cov = random_spd(gen, (50,), 1.5)
    x = torch.randn(50, 2, generator=gen, dtype=torch.float64) * 3
    expected = [
        -multivariate_normal(m.numpy(), c.numpy()).logpdf(p.numpy()) for m, c, p in zip(mean, cov, x, strict=True)
    ]
    np.testing.assert_allclose(gaussian_nll_2d(x, mean, cov).numpy(), expected, rtol=1e-9)
    d2 = mahalanobis_squared(x, mean, cov)
    reference = ((x - mean)[:, None, :] @ torch.linalg.inv(cov) @ (x - mean)[:, :, None]).squeeze()
    np.testing.assert_allclose(d2.numpy(), reference.numpy(), rtol=1e-9)


def test_coverage_of_samples_from_the_stated_gaussian() -> None:
    # 3000 true centres drawn from each detection's own N(position, cov) (sigma mostly ~0.2 m, so the
    # 2 m matching never cuts the tail): the evaluator should see the chi-squared(2) coverage.
    B, M = 300, 10
    gen = torch.Generator().manual_seed(1)
    position = grid_positions(B, M).double()
    cov = random_spd(gen, (B, M), 0.12)
    noise = (torch.linalg.cholesky(cov) @ torch.randn(B, M, 2, 1, generator=gen, dtype=torch.float64)).squeeze(-1)
    evaluator = DetectionEvaluator()
    evaluator.update(make_dets(position, torch.full((B, M), 0.8), cov=cov), make_objects(position + noise))
    report = evaluator.compute()["position"]
    assert report["num_matched"] == B * M
    assert report["expected_1sigma"] == pytest.approx(1 - math.exp(-0.5)) == pytest.approx(EXPECTED_COVERAGE[1])
    assert report["expected_2sigma"] == pytest.approx(1 - math.exp(-2))
    assert report["coverage_1sigma"] == pytest.approx(EXPECTED_COVERAGE[1], abs=0.03)
    assert report["coverage_2sigma"] == pytest.approx(EXPECTED_COVERAGE[2], abs=0.02)
    # Mean NLL of a true sample is the entropy: log(2 pi e) + 0.5 log det(cov).
    entropy = math.log(2 * math.pi * math.e) + 0.5 * torch.logdet(cov).mean().item()
    assert report["nll_mean"] == pytest.approx(entropy, abs=0.08)

    overconfident = DetectionEvaluator()
    overconfident.update(make_dets(position, torch.full((B, M), 0.8), cov=cov / 9), make_objects(position + noise))
    assert overconfident.compute()["position"]["coverage_1sigma"] < 0.1


def test_false_positives_are_expected_counts() -> None:
    gt = make_objects(torch.tensor([[[0.0, 0.0], [20.0, 0.0]], [[0.0, 0.0], [20.0, 0.0]]]))
    position = torch.tensor(
        [
            [[0.3, 0.0], [20.0, 1.0], [40.0, 0.0], [0.0, 30.0], [10.0, 10.0], [50.0, 50.0]],
            [[0.0, 9.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]],
        ]
    )
    existence = torch.tensor([[0.9, 0.8, 0.2, 0.6, 0.7, 0.95], [0.4, 0.0, 0.0, 0.0, 0.0, 0.0]])
    valid = torch.tensor([[True] * 5 + [False], [True] + [False] * 5])  # the 0.95 slot is empty
    evaluator = DetectionEvaluator()
    evaluator.update(make_dets(position, existence, valid=valid), gt)
    report = evaluator.compute()["false_positives"]
    # Frame 0: unmatched 0.2, 0.6, 0.7; frame 1: 0.4.
    assert report["expected_per_frame"] == pytest.approx((1.5 + 0.4) / 2)
    assert report["above_probability_per_frame"] == pytest.approx((2 + 0) / 2)
    assert report["unmatched_slots_per_frame"] == pytest.approx(2.0)
    assert report["mean_existence"] == pytest.approx(1.9 / 4)


def test_ghost_report() -> None:
    gt = make_objects(torch.tensor([[[0.0, 0.0]]]))
    # Sensor output: the real object (agent 0) and two ghosts; the first ghost sits 1 m from the real object.
    sensor = make_objects(
        torch.tensor([[[0.1, 0.0], [1.0, 0.0], [30.0, 0.0], [60.0, 0.0]]]),
        agent_id=torch.tensor([[0, -1, -1, -1]]),
        score=torch.tensor([[0.9, 0.4, 0.6, 0.3]]),
        valid=torch.tensor([[True, True, True, False]]),
    )
    # Slot 0 matches the real object (not a ghost response though 1 m from ghost 1);
    # slots 1 and 2 respond to the ghost at 30 m; slot 3 is far from everything.
    position = torch.tensor([[[0.0, 0.0], [30.5, 0.0], [29.0, 1.0], [-40.0, 0.0]]])
    dets = make_dets(position, torch.tensor([[0.9, 0.7, 0.2, 0.5]]))
    report = ghost_report(dets, gt, sensor)
    assert report["num_ghosts"] == 2
    assert report["num_responding_slots"] == 2
    assert report["existence_per_ghost"] == pytest.approx(0.9 / 2)
    assert report["peak_existence_per_ghost"] == pytest.approx(0.7 / 2)
    assert report["fraction_confident"] == pytest.approx(0.5)
    assert report["sensor_score_per_ghost"] == pytest.approx(0.5)
    assert report["mean_existence_of_responding_slots"] == pytest.approx(0.45)

    evaluator = DetectionEvaluator(EvaluationConfig(ghost_radius=0.5))
    evaluator.update(dets, gt, ghosts=sensor)
    assert evaluator.compute()["ghosts"]["num_responding_slots"] == 0  # slot 1 is exactly 0.5 m away: not within


def test_ghost_report_without_ghosts_or_detections() -> None:
    gt = make_objects(grid_positions(1, 2))
    no_ghosts = make_objects(grid_positions(1, 2))
    report = ghost_report(make_dets(torch.zeros(1, 0, 2), torch.zeros(1, 0)), gt, no_ghosts)
    assert report["num_ghosts"] == 0 and math.isnan(report["existence_per_ghost"])
    ghosts = make_objects(grid_positions(1, 2) + 100, agent_id=torch.full((1, 2), -1))
    report = ghost_report(make_dets(torch.zeros(1, 0, 2), torch.zeros(1, 0)), gt, ghosts)
    assert report["num_ghosts"] == 2 and report["peak_existence_per_ghost"] == 0.0
