"""Calibration: ECE, reliability tables, temperature and covariance scaling, on seeded synthetic data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perception.calibration import (
    TEMPERATURE_BOUNDS,
    apply_temperature,
    binary_nll,
    calibrate_probability,
    expected_calibration_error,
    fit_covariance_scale,
    fit_temperature,
    probability_to_logit,
    reliability_table,
)
from perception.metrics import DetectionEvaluator, mahalanobis_squared
from tests.perception.metric_frames import grid_positions, make_dets, make_objects

SAMPLES = 20_000


def calibrated(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probs = rng.uniform(size=SAMPLES)
    return probs, rng.uniform(size=SAMPLES) < probs


def logistic(seed: int, spread: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """True logits and outcomes drawn with probability sigmoid(logit)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=spread, size=SAMPLES)
    return logits, rng.uniform(size=SAMPLES) < 1 / (1 + np.exp(-logits))


def test_ece_small_when_calibrated_large_when_overconfident() -> None:
    probs, outcomes = calibrated()
    assert expected_calibration_error(probs, outcomes) < 0.02
    overconfident = torch.sigmoid(3 * probability_to_logit(torch.from_numpy(probs))).numpy()
    assert expected_calibration_error(overconfident, outcomes) > 0.1


def test_reliability_table_by_hand() -> None:
    probs = np.array([0.05, 0.15, 0.95, 1.0, 0.5])
    outcomes = np.array([0, 1, 1, 0, 1], dtype=bool)
    table = reliability_table(probs, outcomes, bins=2)
    np.testing.assert_allclose(table.lower, [0.0, 0.5])
    np.testing.assert_array_equal(table.count, [2, 3])  # 0.5 opens the second bin; 1.0 stays in the last
    np.testing.assert_allclose(table.mean_probability, [0.1, 2.45 / 3])
    np.testing.assert_allclose(table.frequency, [0.5, 2 / 3])
    expected = 2 / 5 * abs(0.5 - 0.1) + 3 / 5 * abs(2 / 3 - 2.45 / 3)
    assert expected_calibration_error(probs, outcomes, bins=2) == pytest.approx(expected)
    sparse = reliability_table(torch.tensor([0.1, 0.2]), torch.tensor([True, False]), bins=15)
    assert np.isnan(sparse.frequency[10]) and sparse.count.sum() == 2
    assert set(sparse.as_dict()) == {"lower", "upper", "count", "mean_probability", "frequency"}
    assert math.isnan(expected_calibration_error(np.zeros(0), np.zeros(0)))


def test_fit_temperature_recovers_a_known_scale() -> None:
    logits, outcomes = logistic(seed=1)
    temperature = fit_temperature(3.0 * logits, outcomes)
    assert temperature == pytest.approx(3.0, rel=0.07)
    assert fit_temperature(torch.from_numpy(logits), torch.from_numpy(outcomes)) == pytest.approx(1.0, rel=0.07)
    assert fit_temperature(3.0 * logits, outcomes) == temperature  # deterministic
    # The fit is the NLL minimum: nudging it either way costs.
    best = binary_nll(3.0 * logits, outcomes.astype(float), temperature)
    for other in (temperature * 0.95, temperature * 1.05):
        assert binary_nll(3.0 * logits, outcomes.astype(float), other) > best


def test_temperature_scaling_repairs_overconfidence() -> None:
    logits, outcomes = logistic(seed=2)
    sharp = torch.sigmoid(torch.from_numpy(2.5 * logits))
    assert expected_calibration_error(sharp, outcomes) > 0.05
    temperature = fit_temperature(probability_to_logit(sharp), outcomes)
    repaired = calibrate_probability(sharp, temperature)
    assert expected_calibration_error(repaired, outcomes) < 0.02
    np.testing.assert_allclose(apply_temperature(torch.tensor([3.0, -6.0]), 3.0).numpy(), [1.0, -2.0])


def test_fit_covariance_scale_recovers_a_known_scale() -> None:
    # Errors drawn from N(0, 4 Sigma) judged under Sigma: the maximum-likelihood scale is 4.
    rng = np.random.default_rng(3)
    cov = torch.tensor([[0.5, 0.2], [0.2, 0.3]], dtype=torch.float64)
    chol = torch.linalg.cholesky(4.0 * cov)
    errors = torch.from_numpy(rng.standard_normal((SAMPLES, 2))) @ chol.T
    d2 = mahalanobis_squared(errors, torch.zeros(2, dtype=torch.float64), cov.expand(SAMPLES, 2, 2))
    scale = fit_covariance_scale(d2)
    assert scale == pytest.approx(4.0, rel=0.03)
    # After scaling the coverage of the sigma ellipses is the Gaussian's.
    assert (d2 / scale <= 1.0).double().mean() == pytest.approx(1 - math.exp(-0.5), abs=0.01)
    assert (d2 / scale <= 4.0).double().mean() == pytest.approx(1 - math.exp(-2.0), abs=0.01)

    # It is the NLL minimum: nudging it either way costs.
    def nll(s: float) -> float:
        return float((d2 / (2 * s)).mean() + math.log(s))

    assert nll(scale) < min(nll(scale * 0.95), nll(scale * 1.05))


@pytest.mark.parametrize("bad", [np.zeros(0), np.array([1.0, np.nan]), np.array([1.0, -0.5]), np.ones((2, 2))])
def test_fit_covariance_scale_rejects_bad_input(bad) -> None:
    with pytest.raises(ValueError, match="mahalanobis_sq"):
        fit_covariance_scale(bad)


def test_separable_data_hits_the_lower_bound() -> None:
    logits = np.array([-2.0, -1.0, 1.0, 2.0])
    assert fit_temperature(logits, logits > 0) == pytest.approx(TEMPERATURE_BOUNDS[0], rel=1e-3)


def test_evaluator_reports_existence_calibration() -> None:
    # Every slot on an object has existence 0.8 and every other 0.2; a fifth of each group is
    # flipped, so both groups are exactly calibrated.
    B, M = 50, 10
    xy = grid_positions(B, M)
    real = torch.arange(M).expand(B, M) < 8  # 8 of 10 slots sit on objects
    position = torch.where(real[..., None], xy, xy + 7.0)
    existence = torch.where(real, 0.8, 0.2)
    evaluator = DetectionEvaluator()
    evaluator.update(make_dets(position, existence), make_objects(xy))
    report = evaluator.compute()["calibration"]
    assert report["bins"] == 15 and sum(report["reliability"]["count"]) == B * M
    # Bin of 0.8: 400 slots all real (frequency 1); bin of 0.2: 100 slots none real.
    assert report["ece"] == pytest.approx((400 * 0.2 + 100 * 0.2) / 500)


def test_bad_inputs_name_the_argument() -> None:
    with pytest.raises(ValueError, match="outcomes: expected shape"):
        expected_calibration_error(np.ones(3) * 0.5, np.ones(4))
    with pytest.raises(ValueError, match="probs: expected values in"):
        expected_calibration_error(np.array([1.5]), np.array([1]))
    with pytest.raises(ValueError, match="outcomes: expected booleans"):
        expected_calibration_error(np.array([0.5]), np.array([0.5]))
    with pytest.raises(ValueError, match="bins"):
        reliability_table(np.array([0.5]), np.array([1]), bins=0)
    with pytest.raises(ValueError, match="logits: expected at least one"):
        fit_temperature(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="logits: expected finite"):
        fit_temperature(np.array([np.inf]), np.array([1]))
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(torch.zeros(2), 0.0)
