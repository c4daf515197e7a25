"""Detections and Tracks: validate() accepts random valid instances and rejects corruptions."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from core.contracts import ContractError
from perception.types import STATE_DIM, STATE_POS, STATE_VEL, Detections, Tracks
from tests.strategies import (
    SETTINGS,
    any_index,
    bad_matrix,
    fixed_axes,
    float_fields,
    generator,
    masks,
    prob_fields,
    replace_at,
    resize_axis,
    scales,
    simplex,
    spd,
    symbolic_axes,
    true_index,
)


@st.composite
def detections(draw: st.DrawFn, min_valid: int = 0) -> Detections:
    B, N = draw(st.integers(1, 3)), draw(st.integers(max(1, min_valid), 5))
    gen, scale = generator(draw), draw(scales)

    def randn(*tail: int) -> torch.Tensor:
        return torch.randn(B, N, *tail, generator=gen) * scale

    return Detections(
        existence=torch.rand(B, N, generator=gen),
        class_probs=simplex(gen, (B, N), 3),
        position=randn(2),
        position_cov=spd(gen, (B, N), 2, draw(scales)),
        velocity=randn(2),
        velocity_cov=spd(gen, (B, N), 2, draw(scales)),
        heading=(torch.rand(B, N, generator=gen) * 2 - 1) * math.pi,
        heading_concentration=torch.rand(B, N, generator=gen) * 50,
        size=torch.rand(B, N, 2, generator=gen) * 10 + 0.1,
        valid=masks(draw, (B, N), min_true=min_valid),
    )


@st.composite
def tracks(draw: st.DrawFn, min_observed: int = 0) -> Tracks:
    B, A, H = draw(st.integers(1, 3)), draw(st.integers(max(1, min_observed), 4)), draw(st.integers(2, 5))
    gen = generator(draw)
    valid = masks(draw, (B, A), min_true=min_observed)
    step_valid = masks(draw, (B, A, H))
    if min_observed:
        # Guarantee one observed step on a valid agent, so corruption tests have a target.
        b, a = true_index(draw, valid)
        step_valid[b, a, -1] = True
    return Tracks(
        state=torch.randn(B, A, H, STATE_DIM, generator=gen) * draw(scales),
        state_cov=spd(gen, (B, A, H), STATE_DIM, draw(scales)),
        existence=torch.rand(B, A, generator=gen),
        class_probs=simplex(gen, (B, A), 3),
        size=torch.rand(B, A, 2, generator=gen) * 10 + 0.1,
        step_valid=step_valid,
        valid=valid,
    )


def rejects(contract, field: str, dims: dict[str, int] | None = None) -> None:
    with pytest.raises(ContractError, match=rf"\.{field}\b"):
        contract.validate(dims)


# -- acceptance ---------------------------------------------------------------


@SETTINGS
@given(detections())
def test_detections_accepts_random_valid(det: Detections) -> None:
    assert det.validate() is det


@SETTINGS
@given(tracks())
def test_tracks_accepts_random_valid(tr: Tracks) -> None:
    assert tr.validate() is tr


@pytest.mark.parametrize("batch,slots", [(1, 1), (3, 7), (2, 0)])
def test_empty_constructors_validate(batch: int, slots: int) -> None:
    det = Detections.empty(batch, slots).validate()
    assert det.valid.shape == (batch, slots) and not det.valid.any()
    # The filler is itself valid, so marking every slot valid still passes.
    dataclasses.replace(det, valid=torch.ones_like(det.valid)).validate()
    tr = Tracks.empty(batch, slots, 4).validate()
    assert tr.state_cov.shape == (batch, slots, 4, STATE_DIM, STATE_DIM)
    full = torch.ones_like(tr.step_valid)
    dataclasses.replace(tr, valid=torch.ones_like(tr.valid), step_valid=full).validate()


# -- rejection: non-finite, probabilities, shapes --------------------------


@SETTINGS
@given(st.data(), st.sampled_from(float_fields(Detections)), st.sampled_from([math.nan, math.inf]))
def test_detections_rejects_non_finite_anywhere(data, field: str, bad: float) -> None:
    det = data.draw(detections())
    index = any_index(data.draw, tuple(getattr(det, field).shape))
    # Even empty slots must be finite: NaN there would poison masked arithmetic.
    rejects(replace_at(det, field, index, bad), field)


@SETTINGS
@given(st.data(), st.sampled_from(prob_fields(Detections)), st.floats(1e-4, 1e3))
def test_detections_rejects_probability_outside_unit_interval(data, field: str, excess: float):
    det = data.draw(detections(min_valid=1))
    slot = true_index(data.draw, det.valid)
    index = slot + any_index(data.draw, tuple(getattr(det, field).shape[2:]))
    value = data.draw(st.sampled_from([1.0 + excess, -excess]))
    rejects(replace_at(det, field, index, value), field)


@SETTINGS
@given(st.data())
def test_detections_allows_anything_finite_in_empty_slots(data) -> None:
    det = data.draw(detections())
    empty = ~det.valid
    junk = dataclasses.replace(
        det,
        existence=torch.where(empty, torch.full_like(det.existence, 7.0), det.existence),
        class_probs=torch.where(empty[..., None], -det.class_probs, det.class_probs),
        position_cov=torch.where(empty[..., None, None], -det.position_cov, det.position_cov),
        size=torch.where(empty[..., None], torch.zeros_like(det.size), det.size),
    )
    junk.validate()


@SETTINGS
@given(st.data())
def test_detections_rejects_class_rows_not_summing_to_one(data) -> None:
    det = data.draw(detections(min_valid=1))
    b, n = true_index(data.draw, det.valid)
    factor = data.draw(st.sampled_from([0.5, 0.9, 0.999]))
    probs = det.class_probs.clone()
    probs[b, n] *= factor
    rejects(dataclasses.replace(det, class_probs=probs), "class_probs")


@SETTINGS
@given(st.data(), st.sampled_from(["position_cov", "velocity_cov"]))
def test_detections_rejects_non_spd_covariance(data, field: str) -> None:
    det = data.draw(detections(min_valid=1))
    slot = true_index(data.draw, det.valid)
    rejects(replace_at(det, field, slot, bad_matrix(data.draw, 2)), field)


@SETTINGS
@given(st.data(), st.floats(-10.0, 0.0))
def test_detections_rejects_non_positive_size(data, value: float) -> None:
    det = data.draw(detections(min_valid=1))
    index = true_index(data.draw, det.valid) + (data.draw(st.integers(0, 1)),)
    rejects(replace_at(det, "size", index, value), "size")


@SETTINGS
@given(st.data(), st.floats(-100.0, -1e-3))
def test_detections_rejects_negative_concentration(data, value: float) -> None:
    det = data.draw(detections(min_valid=1))
    index = true_index(data.draw, det.valid)
    rejects(replace_at(det, "heading_concentration", index, value), "heading_concentration")


@SETTINGS
@given(st.data(), st.sampled_from(Detections.field_names()), st.booleans())
def test_detections_rejects_shape_mismatch_between_fields(data, field: str, grow: bool) -> None:
    det = data.draw(detections())
    axis = data.draw(st.sampled_from(symbolic_axes(Detections, field)))
    bad = dataclasses.replace(det, **{field: resize_axis(getattr(det, field), axis, grow)})
    with pytest.raises(ContractError):
        bad.validate()
    # With the sizes known up front, the error names the field that disagrees.
    rejects(bad, field, {"B": det.batch_size, "N": det.num_slots})


@SETTINGS
@given(st.data(), st.sampled_from(["class_probs", "position", "position_cov", "size"]))
def test_detections_rejects_wrong_fixed_size(data, field: str) -> None:
    det = data.draw(detections())
    axis = data.draw(st.sampled_from(fixed_axes(Detections, field)))
    grown = resize_axis(getattr(det, field), axis, True)
    rejects(dataclasses.replace(det, **{field: grown}), field)


def test_detections_rejects_wrong_dtype_and_rank() -> None:
    det = Detections.empty(2, 3)
    rejects(dataclasses.replace(det, valid=det.valid.float()), "valid")
    rejects(dataclasses.replace(det, existence=det.existence.long()), "existence")
    rejects(dataclasses.replace(det, heading=det.heading[..., None]), "heading")


# -- Tracks -------------------------------------------------------------------


@SETTINGS
@given(st.data())
def test_tracks_rejects_non_spd_only_where_observed(data) -> None:
    tr = data.draw(tracks(min_observed=1))
    observed = tr.observed
    index = true_index(data.draw, observed)
    rejects(replace_at(tr, "state_cov", index, bad_matrix(data.draw, STATE_DIM)), "state_cov")
    if (~observed).any():
        unobserved = true_index(data.draw, ~observed)
        replace_at(tr, "state_cov", unobserved, -torch.eye(STATE_DIM)).validate()


@SETTINGS
@given(st.data(), st.sampled_from(float_fields(Tracks)))
def test_tracks_rejects_nan(data, field: str) -> None:
    tr = data.draw(tracks())
    index = any_index(data.draw, tuple(getattr(tr, field).shape))
    rejects(replace_at(tr, field, index, math.nan), field)


@SETTINGS
@given(st.data(), st.sampled_from(prob_fields(Tracks)), st.floats(1e-4, 1e3))
def test_tracks_rejects_probability_outside_unit_interval(data, field: str, excess: float) -> None:
    tr = data.draw(tracks(min_observed=1))
    tail = tuple(getattr(tr, field).shape[2:])
    index = true_index(data.draw, tr.valid) + any_index(data.draw, tail)
    rejects(replace_at(tr, field, index, data.draw(st.sampled_from([1 + excess, -excess]))), field)


@SETTINGS
@given(st.data(), st.sampled_from(Tracks.field_names()), st.booleans())
def test_tracks_rejects_shape_mismatch_between_fields(data, field: str, grow: bool) -> None:
    tr = data.draw(tracks())
    axis = data.draw(st.sampled_from(symbolic_axes(Tracks, field)))
    bad = dataclasses.replace(tr, **{field: resize_axis(getattr(tr, field), axis, grow)})
    with pytest.raises(ContractError):
        bad.validate()
    dims = {"B": tr.batch_size, "A": tr.num_agents, "H": tr.history_steps}
    rejects(bad, field, dims)


def test_tracks_current_step_and_named_slices() -> None:
    tr = Tracks.empty(2, 3, 5)
    state = torch.arange(2 * 3 * 5 * 4, dtype=torch.float32).reshape(2, 3, 5, 4)
    tr = dataclasses.replace(tr, state=state)
    assert torch.equal(tr.current, state[:, :, 4])
    assert torch.equal(tr.current[..., STATE_POS], state[:, :, -1, :2])
    assert torch.equal(tr.current[..., STATE_VEL], state[:, :, -1, 2:])
    assert tr.current_cov.shape == (2, 3, 4, 4)


# -- conversion ---------------------------------------------------------------


@SETTINGS
@given(detections())
def test_detections_flat_round_trip(det: Detections) -> None:
    flat = det.to_flat()
    assert list(flat) == Detections.flat_names()
    back = Detections.from_flat(flat).validate()
    for name in Detections.field_names():
        assert torch.equal(getattr(back, name), getattr(det, name))


@SETTINGS
@given(tracks())
def test_tracks_flat_round_trip_and_index(tr: Tracks) -> None:
    back = Tracks.from_flat(tr.to_flat("tracks_in"), "tracks_in")
    assert all(torch.equal(getattr(back, n), getattr(tr, n)) for n in Tracks.field_names())
    last = tr.index(-1).validate()
    assert last.batch_size == 1 and torch.equal(last.state, tr.state[-1:])
