"""The contract base: shape binding, value checks, masks, conversion and indexing."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor

from core.contracts import ContractError, Dims, TensorContract, check_simplex, check_spd, spec
from tests.strategies import SETTINGS, spd


@dataclass(frozen=True)
class Toy(TensorContract):
    """A small contract exercising every kind of spec.

    Attributes:
        xy: [B, N, 2] float.
        prob: [B, N] float in [0, 1].
        size: [B, N] float >= 0.5.
        kind: [B] long in [0, 3].
        valid: [B, N] bool.
    """

    xy: Tensor = spec(("B", "N", 2))
    prob: Tensor = spec(("B", "N"), prob=True)
    size: Tensor = spec(("B", "N"), low=0.5)
    kind: Tensor = spec(("B",), "long", low=0, high=3)
    valid: Tensor = spec(("B", "N"), "bool")

    MASK_FIELD = "valid"


def toy(B: int = 2, N: int = 3, valid: bool = True) -> Toy:
    return Toy(
        xy=torch.arange(B * N * 2, dtype=torch.float32).reshape(B, N, 2),
        prob=torch.full((B, N), 0.5),
        size=torch.ones(B, N),
        kind=torch.arange(B) % 4,
        valid=torch.full((B, N), valid),
    )


def rejects(contract: TensorContract, message: str, dims=None) -> None:
    with pytest.raises(ContractError, match=message):
        contract.validate(dims)


# -- shapes ---------------------------------------------------------------------


@SETTINGS
@given(st.integers(1, 4), st.integers(0, 5))
def test_binds_symbolic_sizes_across_fields(B: int, N: int) -> None:
    binder = Dims("Toy")
    for f in Toy.tensor_fields():
        binder.check(f.name, getattr(toy(B, N), f.name), f.metadata["tensor"]["shape"])
    assert binder.sizes == {"B": B, "N": N}
    toy(B, N).validate({"B": B, "N": N})


@SETTINGS
@given(st.sampled_from(["prob", "size", "valid"]), st.integers(1, 3))
def test_disagreeing_symbolic_size_names_the_later_field(field: str, extra: int) -> None:
    t = toy()
    grown = torch.cat([getattr(t, field)] + [getattr(t, field)[:, :1]] * extra, dim=1)
    rejects(dataclasses.replace(t, **{field: grown}), rf"Toy\.{field}: axis 1 \(N\) must be 3")


def test_known_sizes_bind_before_the_first_field() -> None:
    rejects(toy(2, 3), r"Toy\.xy: axis 0 \(B\) must be 5", {"B": 5})


def test_rank_fixed_size_dtype_and_type_errors_name_the_field() -> None:
    t = toy()
    rejects(dataclasses.replace(t, xy=t.xy[..., 0]), r"Toy\.xy: expected 3 dims \[B, N, 2\]")
    rejects(dataclasses.replace(t, xy=torch.zeros(2, 3, 3)), r"Toy\.xy: axis 2 must be 2")
    rejects(dataclasses.replace(t, kind=t.kind.float()), r"Toy\.kind: expected a long tensor")
    rejects(dataclasses.replace(t, prob=t.prob.tolist()), r"Toy\.prob: expected a torch.Tensor")


# -- values and masks -----------------------------------------------------------


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("xy", float("nan"), r"Toy\.xy: expected finite"),
        ("prob", 1.5, r"Toy\.prob: expected values <= 1"),
        ("prob", -0.1, r"Toy\.prob: expected values >= 0"),
        ("size", 0.25, r"Toy\.size: expected values >= 0.5, min is 0.25"),
    ],
)
def test_value_checks_name_the_field(field: str, value: float, message: str) -> None:
    t = toy()
    tensor = getattr(t, field).clone()
    tensor[1, 2] = value
    rejects(dataclasses.replace(t, **{field: tensor}), message)


def test_long_range_checks() -> None:
    t = toy()
    rejects(dataclasses.replace(t, kind=torch.tensor([0, 4])), r"Toy\.kind: expected values <= 3")
    rejects(dataclasses.replace(t, kind=torch.tensor([-1, 0])), r"Toy\.kind: expected values >= 0")


def test_range_checks_skip_invalid_slots_but_finiteness_does_not() -> None:
    t = toy(valid=False)
    # Regression: masked-out slots were replaced by 0 before the range check,
    # so any `low` above 0 rejected every empty slot.
    t.validate()
    out_of_range = dataclasses.replace(t, prob=torch.full((2, 3), 9.0), size=torch.zeros(2, 3))
    out_of_range.validate()
    half = t.valid.clone()
    half[0, 1] = True
    message = r"Toy\.prob: expected values <= 1\.0, max is 9"
    rejects(dataclasses.replace(out_of_range, valid=half), message)
    nan = t.xy.clone()
    nan[0, 0, 0] = float("nan")
    rejects(dataclasses.replace(t, xy=nan), r"Toy\.xy: expected finite")


def test_mask_that_is_not_bool_is_a_contract_error() -> None:
    t = toy()
    rejects(dataclasses.replace(t, valid=t.valid.float()), r"Toy\.valid: expected a bool tensor")
    message = r"Toy\.valid: expected a bool tensor, got list"
    rejects(dataclasses.replace(t, valid=t.valid.tolist()), message)


def test_spec_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="spec kind"):
        spec(("B",), "complex")


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.integers(2, 4), st.floats(1e-2, 1e2))
def test_check_spd_accepts_random_spd_and_rejects_corruptions(seed: int, d: int, scale: float):
    cov = spd(torch.Generator().manual_seed(seed), (3,), d, scale)
    check_spd("x", cov)
    asym = cov.clone()
    asym[1, 0, 1] += 0.5 * scale**2
    with pytest.raises(ContractError, match="x: expected symmetric"):
        check_spd("x", asym)
    with pytest.raises(ContractError, match="x: expected positive definite"):
        check_spd("x", -cov)
    # Masked-out matrices are ignored.
    check_spd("x", torch.cat([cov, -cov]), torch.tensor([True] * 3 + [False] * 3))


def test_check_simplex_respects_mask() -> None:
    probs = torch.tensor([[0.2, 0.8], [0.5, 0.6]])
    with pytest.raises(ContractError, match="p: expected each row to sum to 1"):
        check_simplex("p", probs)
    check_simplex("p", probs, torch.tensor([True, False]))


# -- conversion -----------------------------------------------------------------


def test_flat_round_trip_and_missing_key() -> None:
    t = toy()
    flat = t.to_flat()
    assert list(flat) == Toy.flat_names() == [f"toy.{n}" for n in Toy.field_names()]
    back = Toy.from_flat(flat)
    assert all(torch.equal(getattr(back, n), getattr(t, n)) for n in Toy.field_names())
    renamed = Toy.from_flat(t.to_flat("obs"), "obs")
    assert torch.equal(renamed.xy, t.xy)
    del flat["toy.size"]
    with pytest.raises(ContractError, match=r"Toy\.from_flat: missing tensor 'toy\.size'"):
        Toy.from_flat(flat)


def test_to_casts_floats_only_and_keeps_the_original() -> None:
    t = toy()
    moved = t.to("cpu", dtype=torch.float64).validate()
    assert moved.xy.dtype == moved.prob.dtype == torch.float64
    assert moved.kind.dtype == torch.long and moved.valid.dtype == torch.bool
    assert t.xy.dtype == torch.float32 and moved.device == torch.device("cpu")
    assert torch.equal(moved.xy, t.xy.double())


def test_contracts_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        toy().xy = torch.zeros(2, 3, 2)  # type: ignore[misc]


@pytest.mark.parametrize(
    "index,rows",
    [(0, [0]), (3, [3]), (-1, [3]), (slice(1, 3), [1, 2]), (torch.tensor([2, 0]), [2, 0])],
)
def test_index_selects_rows_and_keeps_the_batch_axis(index, rows: list[int]) -> None:
    t = toy(B=4)
    picked = t.index(index).validate()
    assert picked.batch_size == len(rows)
    for name in Toy.field_names():
        assert torch.equal(getattr(picked, name), getattr(t, name)[rows])


def test_index_out_of_range_raises() -> None:
    with pytest.raises(IndexError):
        toy(B=2).index(2)
