"""Plan: validate() accepts random valid plans and rejects corruptions, naming the field."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from core.contracts import ContractError
from planning.types import CONTROL_ACCEL, CONTROL_CURVATURE, POSE_XY, POSE_YAW, Plan
from tests.strategies import (
    SETTINGS,
    any_index,
    float_fields,
    generator,
    replace_at,
    resize_axis,
    scales,
    simplex,
    symbolic_axes,
)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    B, K, T = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 6))
    gen, scale = generator(draw), draw(scales)
    candidates = torch.randn(B, K, T, 3, generator=gen) * scale
    chosen = torch.randint(0, K, (B,), generator=gen)
    return Plan(
        trajectory=candidates[torch.arange(B), chosen],
        speed=torch.rand(B, T, generator=gen) * 20,
        controls=torch.randn(B, T, 2, generator=gen),
        candidates=candidates,
        candidate_risk=torch.randn(B, K, generator=gen) * scale,
        candidate_weights=simplex(gen, (B,), K),
        chosen=chosen,
        sigma=torch.randn(B, generator=gen),
    )


def _tiny_plan() -> Plan:
    B, K, T = 2, 3, 4
    candidates = torch.arange(B * K * T * 3, dtype=torch.float32).reshape(B, K, T, 3)
    chosen = torch.tensor([2, 0])
    return Plan(
        trajectory=candidates[torch.arange(B), chosen],
        speed=torch.ones(B, T),
        controls=torch.zeros(B, T, 2),
        candidates=candidates,
        candidate_risk=torch.zeros(B, K),
        candidate_weights=torch.full((B, K), 1 / K),
        chosen=chosen,
        sigma=torch.zeros(B),
    ).validate()


def rejects(plan: Plan, field: str, dims: dict[str, int] | None = None) -> None:
    with pytest.raises(ContractError, match=rf"Plan\.{field}\b"):
        plan.validate(dims)


@SETTINGS
@given(plans())
def test_accepts_random_valid(plan: Plan) -> None:
    assert plan.validate() is plan


@SETTINGS
@given(st.data(), st.sampled_from(float_fields(Plan)))
def test_rejects_nan_and_inf(data, field: str) -> None:
    plan = data.draw(plans())
    index = any_index(data.draw, tuple(getattr(plan, field).shape))
    value = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    rejects(replace_at(plan, field, index, value), field)


@SETTINGS
@given(st.data(), st.floats(1e-4, 1e3))
def test_rejects_weights_outside_unit_interval(data, excess: float) -> None:
    plan = data.draw(plans())
    index = any_index(data.draw, tuple(plan.candidate_weights.shape))
    value = data.draw(st.sampled_from([1 + excess, -excess]))
    rejects(replace_at(plan, "candidate_weights", index, value), "candidate_weights")


@SETTINGS
@given(st.data(), st.sampled_from([0.0, 0.5, 0.99]))
def test_rejects_weights_not_summing_to_one(data, factor: float) -> None:
    plan = data.draw(plans())
    weights = plan.candidate_weights.clone()
    weights[data.draw(st.integers(0, plan.batch_size - 1))] *= factor
    rejects(dataclasses.replace(plan, candidate_weights=weights), "candidate_weights")


@SETTINGS
@given(st.data(), st.integers(0, 10), st.booleans())
def test_rejects_chosen_out_of_range(data, offset: int, above: bool) -> None:
    plan = data.draw(plans())
    b = data.draw(st.integers(0, plan.batch_size - 1))
    value = plan.num_candidates + offset if above else -1 - offset
    rejects(replace_at(plan, "chosen", (b,), value), "chosen")


@SETTINGS
@given(st.data(), st.sampled_from(Plan.field_names()), st.booleans())
def test_rejects_shape_mismatch_between_fields(data, field: str, grow: bool) -> None:
    plan = data.draw(plans())
    axis = data.draw(st.sampled_from(symbolic_axes(Plan, field)))
    bad = dataclasses.replace(plan, **{field: resize_axis(getattr(plan, field), axis, grow)})
    with pytest.raises(ContractError):
        bad.validate()
    dims = {"B": plan.batch_size, "K": plan.num_candidates, "T": plan.horizon_steps}
    rejects(bad, field, dims)


def test_rejects_wrong_dtype_and_fixed_sizes() -> None:
    plan = _tiny_plan()
    rejects(dataclasses.replace(plan, chosen=plan.chosen.float()), "chosen")
    rejects(dataclasses.replace(plan, trajectory=plan.trajectory[..., :2]), "trajectory")
    rejects(dataclasses.replace(plan, controls=plan.controls[..., :1]), "controls")


def test_named_slices_and_chosen_candidate() -> None:
    plan = _tiny_plan()
    assert torch.equal(plan.chosen_candidate, plan.trajectory)
    assert plan.trajectory[..., POSE_XY].shape == (2, 4, 2)
    assert plan.trajectory[..., POSE_YAW].shape == (2, 4)
    assert plan.controls[..., CONTROL_ACCEL].shape == plan.controls[..., CONTROL_CURVATURE].shape


@SETTINGS
@given(plans())
def test_flat_round_trip_to_and_index(plan: Plan) -> None:
    back = Plan.from_flat(plan.to_flat())
    assert all(torch.equal(getattr(back, n), getattr(plan, n)) for n in Plan.field_names())
    double = plan.to(dtype=torch.float64).validate()
    assert double.trajectory.dtype == torch.float64 and double.chosen.dtype == torch.long
    first = plan.index(0).validate()
    assert torch.equal(first.chosen_candidate, plan.chosen_candidate[:1])
