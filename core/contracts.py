"""Frozen dataclasses of tensors: the base of every contract between modules.

Every package's types build on it (`sim.types.SensorFrame`, `perception.types.Tracks`, ...), so it lives
in `core`, below them all.

A contract declares each tensor field with `spec(shape, kind, ...)`. Shapes use
symbolic dimension names ("B", "N", ...) that must agree across fields, or
integers that must match exactly. `validate()` checks shapes, dtypes, finite
values and value ranges; subclasses add their own checks in `_check()`.
Construction never validates, so contracts stay cheap inside traced graphs; call
`validate()` at boundaries and in tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

T = TypeVar("T", bound="TensorContract")

_KIND_DTYPES = {
    "float": (torch.float16, torch.bfloat16, torch.float32, torch.float64),
    "bool": (torch.bool,),
    "long": (torch.int64, torch.int32),
    "uint8": (torch.uint8,),
}


class ContractError(ValueError):
    """A contract instance does not satisfy its documented shape or values."""


def spec(
    shape: tuple[str | int, ...],
    kind: str = "float",
    *,
    finite: bool = True,
    prob: bool = False,
    low: float | None = None,
    high: float | None = None,
) -> Any:
    """Declare a tensor field: its symbolic shape, dtype kind and value checks."""
    if kind not in _KIND_DTYPES:
        raise ValueError(f"spec kind must be one of {sorted(_KIND_DTYPES)}, got {kind!r}")
    meta = {
        "shape": tuple(shape),
        "kind": kind,
        "finite": finite and kind == "float",
        "prob": prob,
        "low": low,
        "high": high,
    }
    return dataclasses.field(metadata={"tensor": meta})


class Dims:
    """Binds symbolic dimension names to sizes, failing on the first disagreement."""

    def __init__(self, owner: str, known: Mapping[str, int] | None = None):
        self.owner = owner
        self.sizes: dict[str, int] = dict(known or {})

    def check(self, name: str, tensor: Tensor, shape: tuple[str | int, ...]) -> None:
        where = f"{self.owner}.{name}"
        if not isinstance(tensor, Tensor):
            raise ContractError(f"{where}: expected a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dim() != len(shape):
            raise ContractError(
                f"{where}: expected {len(shape)} dims {self.describe(shape)}, got shape {tuple(tensor.shape)}"
            )
        for axis, (want, got) in enumerate(zip(shape, tensor.shape, strict=True)):
            if isinstance(want, int):
                if want != got:
                    raise ContractError(
                        f"{where}: axis {axis} must be {want} ({self.describe(shape)}), got shape {tuple(tensor.shape)}"
                    )
            elif want in self.sizes and self.sizes[want] != got:
                raise ContractError(
                    f"{where}: axis {axis} ({want}) must be {self.sizes[want]} to match "
                    f"the other fields, got shape {tuple(tensor.shape)}"
                )
            else:
                self.sizes[want] = int(got)

    def describe(self, shape: tuple[str | int, ...]) -> str:
        return "[" + ", ".join(str(s) for s in shape) + "]"


def _check_values(where: str, tensor: Tensor, meta: dict[str, Any], mask: Tensor | None) -> None:
    if tensor.dtype not in _KIND_DTYPES[meta["kind"]]:
        raise ContractError(f"{where}: expected a {meta['kind']} tensor, got dtype {tensor.dtype}")
    if tensor.numel() == 0:
        return
    in_use = None
    if mask is not None and mask.shape == tensor.shape[: mask.dim()]:
        # Empty slots may hold anything finite; range checks apply to valid slots.
        # (Masking out violations, not substituting a fill value: any fill can
        # itself lie outside the range, e.g. 0 under `low=0.5`.)
        in_use = mask.reshape(mask.shape + (1,) * (tensor.dim() - mask.dim())).expand_as(tensor)
    if meta["finite"] and not bool(torch.isfinite(tensor).all()):
        raise ContractError(f"{where}: expected finite values, found NaN or inf")
    low = 0.0 if meta["prob"] else meta["low"]
    high = 1.0 if meta["prob"] else meta["high"]
    if low is not None:
        below = tensor < low if in_use is None else (tensor < low) & in_use
        if bool(below.any()):
            worst = float(tensor[below].min())
            raise ContractError(f"{where}: expected values >= {low}, min is {worst:.6g}")
    if high is not None:
        above = tensor > high if in_use is None else (tensor > high) & in_use
        if bool(above.any()):
            worst = float(tensor[above].max())
            raise ContractError(f"{where}: expected values <= {high}, max is {worst:.6g}")


class TensorContract:
    """Mixin for frozen dataclasses whose fields are tensors declared with `spec`.

    `MASK_FIELD` names the boolean field whose leading dims mark the valid
    slots; range checks then apply to valid slots only.
    """

    MASK_FIELD: ClassVar[str | None] = None

    # -- introspection -------------------------------------------------
    @classmethod
    def tensor_fields(cls) -> list[dataclasses.Field]:
        # The class's field table rather than `dataclasses.fields`, which torch.compile cannot trace.
        return [f for f in cls.__dataclass_fields__.values() if "tensor" in f.metadata]  # type: ignore[attr-defined]

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in cls.tensor_fields()]

    @property
    def batch_size(self) -> int:
        first = self.tensor_fields()[0]
        return int(getattr(self, first.name).shape[0])

    @property
    def device(self) -> torch.device:
        return getattr(self, self.tensor_fields()[0].name).device

    # -- validation ----------------------------------------------------
    def validate(self: T, dims: Mapping[str, int] | None = None) -> T:
        """Check every field; raise ContractError naming the field. Returns self."""
        owner = type(self).__name__
        binder = Dims(owner, dims)
        mask = getattr(self, self.MASK_FIELD) if self.MASK_FIELD else None
        if mask is not None and not (isinstance(mask, Tensor) and mask.dtype == torch.bool):
            # Checked up front: other fields' range checks index with the mask.
            got = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
            raise ContractError(f"{owner}.{self.MASK_FIELD}: expected a bool tensor, got {got}")
        for f in self.tensor_fields():
            meta = f.metadata["tensor"]
            value = getattr(self, f.name)
            binder.check(f.name, value, meta["shape"])
            field_mask = None if f.name == self.MASK_FIELD else mask
            _check_values(f"{owner}.{f.name}", value, meta, field_mask)
        self._check(binder.sizes)
        return self

    def _check(self, sizes: dict[str, int]) -> None:
        """Contract-specific checks beyond shapes and ranges; override in subclasses."""

    # -- conversion ----------------------------------------------------
    def to(self: T, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> T:
        """Move every tensor to `device`; cast floating tensors to `dtype` when given."""
        changes = {}
        for f in self.tensor_fields():
            value: Tensor = getattr(self, f.name)
            cast = dtype if dtype is not None and value.is_floating_point() else None
            changes[f.name] = value.to(device=device, dtype=cast)
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def to_flat(self, prefix: str | None = None) -> dict[str, Tensor]:
        """Named flat tensors, e.g. {"detections.existence": ...}, for ONNX inputs/outputs."""
        head = prefix or type(self).__name__.lower()
        return {f"{head}.{name}": getattr(self, name) for name in self.field_names()}

    @classmethod
    def from_flat(cls: type[T], flat: Mapping[str, Tensor], prefix: str | None = None) -> T:
        """Inverse of `to_flat`; a missing name is an error that names it."""
        head = prefix or cls.__name__.lower()
        values = {}
        for name in cls.field_names():
            key = f"{head}.{name}"
            if key not in flat:
                raise ContractError(f"{cls.__name__}.from_flat: missing tensor {key!r}")
            values[name] = flat[key]
        return cls(**values)

    @classmethod
    def flat_names(cls, prefix: str | None = None) -> list[str]:
        head = prefix or cls.__name__.lower()
        return [f"{head}.{name}" for name in cls.field_names()]

    def index(self: T, batch_index: Tensor | slice | int) -> T:
        """Select batch rows (keeps the batch axis for int indices)."""
        if isinstance(batch_index, int):
            # A one-element list keeps the axis, accepts negative indices and
            # raises when out of range (slice(i, i + 1) is empty for i = -1).
            batch_index = [batch_index]
        changes = {f.name: getattr(self, f.name)[batch_index] for f in self.tensor_fields()}
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


Named = dict[str, Tensor]


class FlatModule(nn.Module):
    """A function of named tensors (contracts flattened with `to_flat`) as a module on positional ones, the
    form torch.export and ONNX trace: `forward(*tensors)` takes the `inputs` in order and returns the
    `outputs` of `run(module, named)` in order. `module` is registered as `name`, so its weights are the
    graph's and their names in an exported graph start with `name`."""

    def __init__(
        self,
        module: nn.Module,
        inputs: Sequence[str],
        outputs: Sequence[str],
        run: Callable[[Any, Named], Named],
        name: str = "module",
    ):
        super().__init__()
        self.add_module(name, module)
        self.module_name, self.inputs, self.outputs, self.run = name, tuple(inputs), tuple(outputs), run

    def forward(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        out = self.run(getattr(self, self.module_name), dict(zip(self.inputs, tensors, strict=True)))
        return tuple(out[name] for name in self.outputs)


def check_spd(where: str, cov: Tensor, mask: Tensor | None = None, eps: float = 0.0) -> None:
    """Raise unless every valid 2x2 (or dxd) matrix in `cov [..., d, d]` is symmetric positive definite."""
    if cov.numel() == 0:
        return
    if mask is not None:
        eye = torch.eye(cov.shape[-1], dtype=cov.dtype, device=cov.device)
        expand = mask.reshape(mask.shape + (1,) * (cov.dim() - mask.dim()))
        cov = torch.where(expand, cov, eye)
    scale = cov.abs().amax(dim=(-1, -2), keepdim=True).clamp_min(1e-12)
    if bool(((cov - cov.transpose(-1, -2)).abs() > 1e-5 * scale + 1e-9).any()):
        raise ContractError(f"{where}: expected symmetric matrices")
    eig = torch.linalg.eigvalsh(cov.double())
    if bool((eig <= eps).any()):
        raise ContractError(f"{where}: expected positive definite matrices, smallest eigenvalue {float(eig.min()):.3g}")


def check_simplex(where: str, probs: Tensor, mask: Tensor | None = None, tol: float = 1e-4) -> None:
    """Raise unless valid rows of `probs [..., C]` sum to one."""
    if probs.numel() == 0:
        return
    err = (probs.sum(-1) - 1.0).abs()
    if mask is not None:
        err = torch.where(mask, err, torch.zeros_like(err))
    if bool((err > tol).any()):
        raise ContractError(f"{where}: expected each row to sum to 1, worst error {float(err.max()):.3g}")


def constant(values: Sequence[Any] | float, like: Tensor) -> Tensor:
    """A small constant table (nested sequences of numbers) with `like`'s dtype and device, built from
    fill kernels: `torch.tensor(..., device="cuda")` copies from host memory, which a CUDA graph
    cannot capture. Exports to ONNX as a constant."""
    if isinstance(values, Sequence):
        return torch.stack([constant(v, like) for v in values])
    return like.new_full((), float(values))
