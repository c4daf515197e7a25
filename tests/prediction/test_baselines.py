"""Constant-velocity baselines: exact extrapolation, CVM-S sampling, forecasts, input checks."""

from __future__ import annotations

import math

import pytest
import torch

from prediction.baselines import CVM_S_HEADING_STD_DEG, ConstantVelocity, ConstantVelocitySampled

START = torch.tensor([1.0, -2.0])
STEP = torch.tensor([0.5, 0.25])  # m per 0.4 s; dyadic, so extrapolation is exact in float32


@pytest.fixture
def observations():
    """S=2 windows, A=3 slots, 8 steps.

    [0, 0]: walks a straight line, seen throughout.
    [0, 1]: seen now but not one step ago (velocity unknown -> 0), NaN filler where unseen.
    [0, 2]: not seen now (not an agent of this window).
    [1, 0]: the straight line reversed.
    """
    xy = torch.zeros(2, 3, 8, 2)
    valid = torch.zeros(2, 3, 8, dtype=torch.bool)
    k = torch.arange(8, dtype=torch.float32)[:, None]
    xy[0, 0], valid[0, 0] = START + k * STEP, True
    xy[0, 1] = float("nan")
    xy[0, 1, -1], valid[0, 1, -1] = torch.tensor([4.0, 4.0]), True
    xy[0, 1, :5], valid[0, 1, :5] = 3.0, True  # an old track piece, then a gap before now
    xy[0, 2, :7], valid[0, 2, :7] = START + k[:7] * STEP, True
    xy[1, 0], valid[1, 0] = START - k * STEP, True
    return xy, valid


def expected_line(sign: float = 1.0) -> torch.Tensor:
    """[12, 2] true continuation of the straight line after step 7."""
    k = torch.arange(8, 20, dtype=torch.float32)[:, None]
    return START + sign * k * STEP


def test_constant_velocity_extrapolates_a_straight_line_exactly(observations):
    xy, valid = observations
    samples = ConstantVelocity().predict_positions(xy, valid, num_samples=5, seed=3)
    assert samples.shape == (2, 3, 5, 12, 2)
    assert torch.equal(samples[0, 0], expected_line().expand(5, 12, 2))
    assert torch.equal(samples[1, 0], expected_line(-1.0).expand(5, 12, 2))
    # No previous step: the agent stays where it is now; absent agents get zeros.
    assert torch.equal(samples[0, 1], torch.tensor([4.0, 4.0]).expand(5, 12, 2))
    assert torch.equal(samples[0, 2], torch.zeros(5, 12, 2))
    assert torch.isfinite(samples).all()


def test_default_sample_count(observations):
    xy, valid = observations
    assert ConstantVelocitySampled().predict_positions(xy, valid).shape == (2, 3, 20, 12, 2)


def test_sampled_with_zero_heading_std_is_the_deterministic_model(observations):
    xy, valid = observations
    still = ConstantVelocitySampled(heading_std_deg=0.0).predict_positions(xy, valid, num_samples=7, seed=11)
    assert torch.equal(still, ConstantVelocity().predict_positions(xy, valid, num_samples=7))


def test_sampling_is_deterministic_given_the_seed(observations):
    xy, valid = observations
    model = ConstantVelocitySampled()
    first = model.predict_positions(xy, valid, seed=5)
    assert torch.equal(first, model.predict_positions(xy, valid, seed=5))
    assert not torch.equal(first, model.predict_positions(xy, valid, seed=6))


def test_cvm_s_samples_rotate_the_velocity_by_gaussian_angles():
    xy = (START + torch.arange(8.0)[:, None] * STEP).expand(1, 1, 8, 2)
    valid = torch.ones(1, 1, 8, dtype=torch.bool)
    samples = ConstantVelocitySampled().predict_positions(xy, valid, num_samples=4000, seed=0)[0, 0]  # [N, 12, 2]
    moves = samples - xy[0, 0, -1]  # [N, 12, 2], (t + 1) x the rotated step
    speed = torch.linalg.vector_norm(moves, dim=-1) / torch.arange(1, 13)
    assert torch.allclose(speed, torch.linalg.vector_norm(STEP).expand_as(speed), rtol=1e-5)  # speed kept
    heading = torch.atan2(moves[..., 1], moves[..., 0])  # [N, 12]
    assert torch.allclose(heading, heading[:, :1].expand_as(heading), atol=1e-5)  # one angle per sample
    turn = torch.rad2deg(heading[:, 0] - math.atan2(STEP[1], STEP[0]))
    assert abs(float(turn.mean())) < 1.5  # 4000 draws: standard error of the mean about 0.4 degrees
    assert float(turn.std()) == pytest.approx(CVM_S_HEADING_STD_DEG, rel=0.05)


def test_constant_velocity_forecast(observations):
    xy, valid = observations
    forecast = ConstantVelocity(std_per_second=0.25).forecast(xy, valid).validate()
    assert forecast.valid.tolist() == [[True, True, False], [True, False, False]]
    assert forecast.num_modes == 1 and forecast.horizon_steps == 12
    assert torch.equal(forecast.means[0, 0, 0], expected_line())
    assert torch.equal(forecast.most_likely()[1, 0], expected_line(-1.0))
    std = 0.25 * 0.4 * torch.arange(1, 13, dtype=torch.float32)
    assert torch.allclose(forecast.chol[0, 0, 0], torch.diag_embed(std[:, None].expand(12, 2)))
    assert forecast.existence.tolist() == [[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]]
    assert torch.equal(forecast.class_probs[0, 0], torch.tensor([0.0, 1.0, 0.0]))


def test_cvm_s_forecast_is_a_symmetric_fan_of_equal_modes(observations):
    xy, valid = observations
    forecast = ConstantVelocitySampled(num_modes=7).forecast(xy, valid).validate()
    assert forecast.num_modes == 7
    assert torch.allclose(forecast.weights[forecast.valid], torch.full((3, 7), 1 / 7))
    # Mode 0 is the median heading (no turn), and the most likely; the others pair up with opposite turns.
    assert torch.allclose(forecast.means[0, 0, 0], expected_line())
    assert torch.allclose(forecast.most_likely()[0, 0], expected_line())
    move = forecast.means[0, 0, :, -1] - xy[0, 0, -1]  # [7, 2]
    turn = torch.atan2(move[:, 1], move[:, 0]) - math.atan2(STEP[1], STEP[0])
    assert torch.allclose(turn.sort().values, -turn.sort().values.flip(0), atol=1e-5)
    # The outer modes sit at the 1/14 and 13/14 quantiles of N(0, 25 deg): z = 1.4652.
    assert float(torch.rad2deg(turn.max())) == pytest.approx(1.4652 * CVM_S_HEADING_STD_DEG, rel=1e-3)


def test_float64_inputs_stay_float64(observations):
    xy, valid = observations
    assert ConstantVelocitySampled().predict_positions(xy.double(), valid, num_samples=2).dtype == torch.float64
    assert ConstantVelocitySampled().forecast(xy.double(), valid).means.dtype == torch.float64


@pytest.mark.parametrize("model", [ConstantVelocity(), ConstantVelocitySampled()])
def test_inputs_are_checked(observations, model):
    xy, valid = observations
    with pytest.raises(ValueError, match=r"obs_xy: expected a float tensor \[S, A, H, 2\]"):
        model.predict_positions(xy[..., 0], valid)
    with pytest.raises(ValueError, match="obs_xy: expected at least 2 observed steps"):
        model.predict_positions(xy[:, :, :1], valid[:, :, :1])
    with pytest.raises(ValueError, match="obs_xy: expected a float tensor"):
        model.forecast(xy.long(), valid)
    with pytest.raises(ValueError, match="obs_valid: expected a bool tensor"):
        model.predict_positions(xy, valid.float())
    with pytest.raises(ValueError, match=r"obs_valid: expected shape \(2, 3, 8\)"):
        model.forecast(xy, valid[:, :2])
    bad = xy.clone()
    bad[1, 0, 4, 1] = float("nan")
    with pytest.raises(ValueError, match=r"obs_xy: non-finite position at window 1, agent 0, step 4"):
        model.predict_positions(bad, valid)
    with pytest.raises(ValueError, match="num_samples"):
        model.predict_positions(xy, valid, num_samples=0)


def test_model_parameters_are_checked():
    with pytest.raises(ValueError, match="dt > 0"):
        ConstantVelocity(dt=0.0)
    with pytest.raises(ValueError, match="heading_std_deg >= 0"):
        ConstantVelocitySampled(heading_std_deg=-1.0)
    with pytest.raises(ValueError, match="num_modes >= 1"):
        ConstantVelocitySampled(num_modes=0)
