"""Forecast: validation, the torch.distributions mixture, and reparameterised sampling."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from core.contracts import ContractError
from prediction.types import Forecast
from tests.strategies import (
    SETTINGS,
    any_index,
    generator,
    masks,
    prob_fields,
    replace_at,
    resize_axis,
    scales,
    simplex,
    symbolic_axes,
    true_index,
)


def random_chol(gen: torch.Generator, shape: tuple[int, ...], scale: float) -> torch.Tensor:
    """[*shape, 2, 2] lower-triangular factors with a positive diagonal."""
    raw = torch.randn(*shape, 2, 2, generator=gen) * scale
    diag = torch.rand(*shape, 2, generator=gen) * scale + 0.05 * scale
    return torch.tril(raw, diagonal=-1) + torch.diag_embed(diag)


@st.composite
def forecasts(draw: st.DrawFn, min_valid: int = 0, garbage_in_empty: bool = False) -> Forecast:
    B, A = draw(st.integers(1, 3)), draw(st.integers(max(1, min_valid), 4))
    K, T = draw(st.integers(1, 4)), draw(st.integers(1, 6))
    gen = generator(draw)
    logits = torch.randn(B, A, K, generator=gen) * draw(st.floats(0.1, 5.0))
    valid = masks(draw, (B, A), min_true=min_valid)
    forecast = Forecast(
        log_weights=torch.log_softmax(logits, dim=-1),
        means=torch.randn(B, A, K, T, 2, generator=gen) * draw(scales),
        chol=random_chol(gen, (B, A, K, T), draw(st.floats(0.05, 10.0))),
        existence=torch.rand(B, A, generator=gen),
        class_probs=simplex(gen, (B, A), 3),
        valid=valid,
    )
    if garbage_in_empty:
        # Finite filler that would break a Gaussian: zero factors, unnormalised weights.
        empty = ~valid
        unnormalised = torch.full_like(logits, 5.0)
        forecast = dataclasses.replace(
            forecast,
            log_weights=torch.where(empty[..., None], unnormalised, forecast.log_weights),
            chol=torch.where(empty[..., None, None, None, None], 0.0, forecast.chol),
        )
    return forecast


def rejects(forecast: Forecast, field: str, dims: dict[str, int] | None = None) -> None:
    with pytest.raises(ContractError, match=rf"Forecast\.{field}\b"):
        forecast.validate(dims)


def inverse_cdf(forecast: Forecast, noise_mode: torch.Tensor) -> torch.Tensor:
    """[B, A, S] reference mode pick: the first k whose cumulative weight exceeds u."""
    cdf = forecast.weights.detach().cumsum(-1).contiguous()
    return torch.searchsorted(cdf, noise_mode, right=True).clamp(max=forecast.num_modes - 1)


def noise_for(forecast: Forecast, samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    return forecast.sample_noise(samples, torch.Generator().manual_seed(seed))


# -- validation -----------------------------------------------------------------


@SETTINGS
@given(forecasts(garbage_in_empty=True))
def test_accepts_random_valid(forecast: Forecast) -> None:
    assert forecast.validate() is forecast


def test_empty_validates_even_when_marked_valid() -> None:
    forecast = Forecast.empty(2, 3, 4, 5).validate()
    assert not forecast.valid.any()
    dataclasses.replace(forecast, valid=torch.ones_like(forecast.valid)).validate()


@SETTINGS
@given(st.data(), st.sampled_from(["log_weights", "means", "chol", "existence", "class_probs"]))
def test_rejects_nan_and_inf(data, field: str) -> None:
    forecast = data.draw(forecasts())
    index = any_index(data.draw, tuple(getattr(forecast, field).shape))
    value = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    rejects(replace_at(forecast, field, index, value), field)


@SETTINGS
@given(st.data(), st.sampled_from(prob_fields(Forecast)), st.floats(1e-4, 1e3))
def test_rejects_probability_outside_unit_interval(data, field: str, excess: float) -> None:
    forecast = data.draw(forecasts(min_valid=1))
    tail = tuple(getattr(forecast, field).shape[2:])
    index = true_index(data.draw, forecast.valid) + any_index(data.draw, tail)
    value = data.draw(st.sampled_from([1 + excess, -excess]))
    rejects(replace_at(forecast, field, index, value), field)


@SETTINGS
@given(st.data(), st.floats(1e-3, 10.0), st.booleans())
def test_rejects_unnormalised_log_weights(data, shift: float, up: bool) -> None:
    forecast = data.draw(forecasts(min_valid=1))
    b, a = true_index(data.draw, forecast.valid)
    log_weights = forecast.log_weights.clone()
    log_weights[b, a] += shift if up else -shift
    rejects(dataclasses.replace(forecast, log_weights=log_weights), "log_weights")


@SETTINGS
@given(st.data(), st.sampled_from(["upper", "zero_diag", "negative_diag"]))
def test_rejects_bad_cholesky_factor(data, how: str) -> None:
    forecast = data.draw(forecasts(min_valid=1))
    b, a = true_index(data.draw, forecast.valid)
    k, t = any_index(data.draw, (forecast.num_modes, forecast.horizon_steps))
    i = data.draw(st.integers(0, 1))
    size = data.draw(st.floats(1e-3, 10.0))
    if how == "upper":
        index, value = (b, a, k, t, 0, 1), size
    else:
        index, value = (b, a, k, t, i, i), 0.0 if how == "zero_diag" else -size
    rejects(replace_at(forecast, "chol", index, value), "chol")


@SETTINGS
@given(st.data(), st.sampled_from(Forecast.field_names()), st.booleans())
def test_rejects_shape_mismatch_between_fields(data, field: str, grow: bool) -> None:
    forecast = data.draw(forecasts())
    axis = data.draw(st.sampled_from(symbolic_axes(Forecast, field)))
    resized = resize_axis(getattr(forecast, field), axis, grow)
    bad = dataclasses.replace(forecast, **{field: resized})
    with pytest.raises(ContractError):
        bad.validate()
    B, A, K = forecast.log_weights.shape
    rejects(bad, field, {"B": B, "A": A, "K": K, "T": forecast.horizon_steps})


# -- distribution -----------------------------------------------------------------


@SETTINGS
@given(forecasts(garbage_in_empty=True), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_log_prob_of_samples_is_finite(forecast: Forecast, samples: int, seed: int) -> None:
    dist = forecast.distribution()
    B, A, K = forecast.log_weights.shape
    assert dist.batch_shape == (B, A) and dist.event_shape == (forecast.horizon_steps, 2)
    drawn = forecast.sample(*noise_for(forecast, samples, seed))  # [B, A, S, T, 2]
    log_prob = dist.log_prob(drawn.movedim(2, 0))  # [S, B, A]
    assert log_prob.shape == (samples, B, A)
    assert torch.isfinite(log_prob).all()


@SETTINGS
@given(forecasts(garbage_in_empty=True))
def test_mixture_mean_is_weighted_average_of_mode_means(forecast: Forecast) -> None:
    expected = (forecast.weights[..., None, None] * forecast.means).sum(dim=2)
    mean = forecast.distribution().mean
    valid = forecast.valid
    torch.testing.assert_close(mean[valid], expected[valid], rtol=1e-5, atol=1e-4)
    assert torch.isfinite(mean).all()


def test_log_prob_matches_hand_computed_mixture() -> None:
    forecast = Forecast.empty(1, 1, 2, 3)
    means = torch.stack([torch.zeros(3, 2), torch.full((3, 2), 2.0)])[None, None]
    forecast = dataclasses.replace(
        forecast,
        log_weights=torch.log(torch.tensor([[[0.25, 0.75]]])),
        means=means,
        chol=forecast.chol * 0.5,
        valid=torch.ones(1, 1, dtype=torch.bool),
    ).validate()
    x = torch.ones(1, 1, 3, 2)
    # Per mode: T * 2 independent N(mu, 0.5^2) terms.
    per_mode = [torch.distributions.Normal(mu, 0.5).log_prob(torch.ones(3, 2)).sum() for mu in (0.0, 2.0)]
    expected = torch.logsumexp(torch.stack(per_mode) + torch.log(torch.tensor([0.25, 0.75])), 0)
    torch.testing.assert_close(forecast.distribution().log_prob(x)[0, 0], expected)


# -- sampling -------------------------------------------------------------------


@SETTINGS
@given(forecasts(garbage_in_empty=True), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_sample_is_deterministic_given_noise(forecast: Forecast, samples: int, seed: int) -> None:
    noise = noise_for(forecast, samples, seed)
    rng_before = torch.get_rng_state()
    first = forecast.sample(*noise)
    # No draw from torch's global generator: all randomness is the caller's noise.
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.equal(first, forecast.sample(*noise))
    assert first.shape == (*forecast.valid.shape, samples, forecast.horizon_steps, 2)
    assert torch.isfinite(first).all()


@SETTINGS
@given(forecasts(min_valid=1), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_sample_picks_modes_by_inverse_cdf(forecast: Forecast, samples: int, seed: int) -> None:
    noise_mode, noise_pos = noise_for(forecast, samples, seed)
    drawn = forecast.sample(noise_mode, torch.zeros_like(noise_pos))
    expected_mode = inverse_cdf(forecast, noise_mode)
    expected = torch.stack([forecast.means[b, a, expected_mode[b, a]] for b, a in forecast.valid.nonzero().tolist()])
    torch.testing.assert_close(drawn[forecast.valid], expected)


@SETTINGS
@given(forecasts(min_valid=1), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_gradients_flow_from_samples_to_means_and_chol(forecast: Forecast, samples: int, seed: int):
    means = forecast.means.clone().requires_grad_(True)
    chol = forecast.chol.clone().requires_grad_(True)
    forecast = dataclasses.replace(forecast, means=means, chol=chol)
    noise_mode, noise_pos = noise_for(forecast, samples, seed)
    forecast.sample(noise_mode, noise_pos).sum().backward()
    assert means.grad is not None and chol.grad is not None
    # Each sample adds exactly 1 to d(sum)/d(mean) of its mode at every step and coordinate.
    picked = torch.nn.functional.one_hot(inverse_cdf(forecast, noise_mode), forecast.num_modes)
    picked = picked.sum(2)  # [B, A, K]: how many samples took each mode
    valid = forecast.valid
    expected = picked[..., None, None].float().expand_as(means)
    torch.testing.assert_close(means.grad[valid], expected[valid])
    assert chol.grad[valid].abs().sum() > 0
    assert (means.grad[~valid] == 0).all() and (chol.grad[~valid] == 0).all()


def test_sample_statistics_match_the_mixture() -> None:
    gen = torch.Generator().manual_seed(0)
    forecast = Forecast(
        log_weights=torch.log_softmax(torch.randn(1, 2, 3, generator=gen), -1),
        means=torch.randn(1, 2, 3, 4, 2, generator=gen) * 3,
        chol=random_chol(gen, (1, 2, 3, 4), 1.0),
        existence=torch.ones(1, 2),
        class_probs=torch.full((1, 2, 3), 1 / 3),
        valid=torch.ones(1, 2, dtype=torch.bool),
    ).validate()
    drawn = forecast.sample(*forecast.sample_noise(20000, gen))
    dist = forecast.distribution()
    torch.testing.assert_close(drawn.mean(2), dist.mean, atol=0.15, rtol=0.0)
    torch.testing.assert_close(drawn.var(2), dist.variance, atol=0.0, rtol=0.1)


def test_sample_rejects_misshaped_noise() -> None:
    forecast = Forecast.empty(2, 3, 4, 5)
    noise_mode, noise_pos = noise_for(forecast, 6, 0)
    with pytest.raises(ContractError, match="noise_mode"):
        forecast.sample(noise_mode[:1], noise_pos)
    with pytest.raises(ContractError, match="noise_pos"):
        forecast.sample(noise_mode, noise_pos[..., :4, :])


class _SampleModule(torch.nn.Module):
    """sample() and most_likely() of a [2, 3, 4, 5] forecast, as one exportable graph."""

    def forward(self, log_weights, means, chol, valid, noise_mode, noise_pos):
        forecast = dataclasses.replace(
            Forecast.empty(2, 3, 4, 5), log_weights=log_weights, means=means, chol=chol, valid=valid
        )
        return forecast.sample(noise_mode, noise_pos), forecast.most_likely()


def test_sample_exports_without_data_dependent_control_flow() -> None:
    def inputs(seed: int) -> tuple[torch.Tensor, ...]:
        g = torch.Generator().manual_seed(seed)
        f = dataclasses.replace(
            Forecast.empty(2, 3, 4, 5),
            log_weights=torch.log_softmax(torch.randn(2, 3, 4, generator=g) * 3, -1),
            means=torch.randn(2, 3, 4, 5, 2, generator=g),
            chol=random_chol(g, (2, 3, 4, 5), 1.0),
            valid=torch.rand(2, 3, generator=g) > 0.3,
        )
        return (f.log_weights, f.means, f.chol, f.valid, *f.sample_noise(7, g))

    # torch.export refuses Python branches on tensor values, so exporting at all
    # is the check; the exported graph must then agree with eager on new inputs.
    exported = torch.export.export(_SampleModule(), inputs(0)).module()
    other = inputs(1)
    for got, want in zip(exported(*other), _SampleModule()(*other), strict=True):
        torch.testing.assert_close(got, want)


# -- most likely mode, conversion -------------------------------------------------


@SETTINGS
@given(forecasts(garbage_in_empty=True))
def test_most_likely_is_the_highest_weight_mode(forecast: Forecast) -> None:
    best = forecast.most_likely()
    assert best.shape == (*forecast.valid.shape, forecast.horizon_steps, 2)
    for b, a in forecast.valid.nonzero().tolist():
        k = int(forecast.log_weights[b, a].argmax())
        assert torch.equal(best[b, a], forecast.means[b, a, k])
    assert (best[~forecast.valid] == 0).all()


@SETTINGS
@given(forecasts())
def test_flat_round_trip(forecast: Forecast) -> None:
    flat = forecast.to_flat()
    assert set(flat) == {f"forecast.{n}" for n in Forecast.field_names()}
    back = Forecast.from_flat(flat).validate()
    assert all(torch.equal(getattr(back, n), getattr(forecast, n)) for n in Forecast.field_names())
    del flat["forecast.chol"]
    with pytest.raises(ContractError, match="forecast.chol"):
        Forecast.from_flat(flat)
