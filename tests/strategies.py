"""Hypothesis helpers shared by the contract tests: random valid tensors and corruptions.

Hypothesis draws the sizes, scales, masks and a seed; the tensors themselves
come from a `torch.Generator` seeded with it, so every example is reproducible
and shrinks through its seed and sizes.
"""

from __future__ import annotations

import dataclasses

import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from torch import Tensor

from core.contracts import TensorContract

# Contract checks are cheap but torch's first calls are not; deadlines would be flaky.
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scales = st.floats(min_value=1e-2, max_value=1e2)


def generator(draw: st.DrawFn) -> torch.Generator:
    return torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))


def spd(gen: torch.Generator, shape: tuple[int, ...], d: int, scale: float) -> Tensor:
    """[*shape, d, d] symmetric positive definite matrices, A A^T + eps I.

    eps is relative to scale^2 so the condition number stays far from what
    float32 rounding could push to a non-positive eigenvalue.
    """
    a = torch.randn(*shape, d, d, generator=gen, dtype=torch.float64) * scale
    cov = a @ a.transpose(-1, -2) + 1e-2 * scale**2 * torch.eye(d, dtype=torch.float64)
    return cov.float()


def simplex(gen: torch.Generator, shape: tuple[int, ...], c: int) -> Tensor:
    """[*shape, c] probability rows (softmax of random logits)."""
    return torch.softmax(torch.randn(*shape, c, generator=gen) * 3.0, dim=-1)


def masks(draw: st.DrawFn, shape: tuple[int, ...], min_true: int = 0) -> Tensor:
    """A bool mask of `shape`, with at least `min_true` entries set (when it has that many)."""
    n = 1
    for s in shape:
        n *= s
    flags = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    order = draw(st.permutations(range(n))) if n else []
    for i in order[:min_true]:
        flags[i] = True
    return torch.tensor(flags, dtype=torch.bool).reshape(shape)


def true_index(draw: st.DrawFn, mask: Tensor) -> tuple[int, ...]:
    """The index of one set entry of `mask` (the mask must have one)."""
    hits = mask.nonzero().tolist()
    return tuple(draw(st.sampled_from(hits)))


def any_index(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(draw(st.integers(0, s - 1)) for s in shape)


def replace_at(contract: TensorContract, name: str, index: tuple, value) -> TensorContract:
    """A copy of `contract` whose field `name` holds `value` at `index`."""
    tensor = getattr(contract, name).clone()
    tensor[index] = value
    return dataclasses.replace(contract, **{name: tensor})


def resize_axis(tensor: Tensor, axis: int, grow: bool) -> Tensor:
    """`tensor` with one more (repeated last) or one fewer entry along `axis`."""
    size = tensor.shape[axis]
    if grow or size == 1:
        return torch.cat([tensor, tensor.narrow(axis, size - 1, 1)], dim=axis)
    return tensor.narrow(axis, 0, size - 1)


def symbolic_axes(contract: type[TensorContract], name: str) -> list[int]:
    """Axes of field `name` declared with a symbolic size ("B", "N", ...)."""
    field = next(f for f in contract.tensor_fields() if f.name == name)
    return [i for i, s in enumerate(field.metadata["tensor"]["shape"]) if isinstance(s, str)]


def fixed_axes(contract: type[TensorContract], name: str) -> list[int]:
    """Axes of field `name` declared with a fixed integer size."""
    field = next(f for f in contract.tensor_fields() if f.name == name)
    return [i for i, s in enumerate(field.metadata["tensor"]["shape"]) if isinstance(s, int)]


def float_fields(contract: type[TensorContract]) -> list[str]:
    return [f.name for f in contract.tensor_fields() if f.metadata["tensor"]["kind"] == "float"]


def prob_fields(contract: type[TensorContract]) -> list[str]:
    return [f.name for f in contract.tensor_fields() if f.metadata["tensor"]["prob"]]


def bad_matrix(draw: st.DrawFn, d: int) -> Tensor:
    """A dxd matrix that is not symmetric positive definite, and which way it fails."""
    kind = draw(st.sampled_from(["indefinite", "negative", "singular", "asymmetric"]))
    scale = draw(scales)
    eye = torch.eye(d)
    if kind == "indefinite":
        m = eye.clone()
        m[-1, -1] = -draw(st.floats(1e-3, 1e3))
        m = m * scale
    elif kind == "negative":
        m = -eye * scale
    elif kind == "singular":
        m = torch.zeros(d, d)
        m[0, 0] = scale
    else:
        m = eye * scale
        m[0, 1] = scale * draw(st.floats(0.05, 0.5))
    return m
