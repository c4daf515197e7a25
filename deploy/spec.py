"""The input/output specification of an exported graph, and the checks every runtime runs on its inputs.

A `GraphSpec` lists each named input and output with its dtype and shape; a
shape entry is an int (a fixed size) or a name (a dynamic axis such as
"batch"). Every input bound to the same dynamic name must agree, so a feed
with a batch of 4 frames and 3 sigmas is refused, naming both inputs. Floating
inputs must be finite: an exported graph has no contract checks inside it, so
a NaN sigma or speed would otherwise come back as a NaN plan. The spec
travels inside each ONNX file as metadata (`drivestack.spec`) and in the
artifact's manifest, so a runtime checks its feed without the Python model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

BATCH = "batch"
SAMPLES = "samples"

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64,
                                  "bool": torch.bool}  # fmt: skip
_NAMES = {dtype: name for name, dtype in DTYPES.items()}


class InputError(ValueError):
    """A runtime's inputs do not match its graph: a missing, unknown, misshapen, mistyped or non-finite tensor."""


def dtype_name(dtype: torch.dtype) -> str:
    if dtype not in _NAMES:
        raise ValueError(f"dtype {dtype}: graphs carry only {sorted(DTYPES)}")
    return _NAMES[dtype]


@dataclass(frozen=True)
class TensorSpec:
    """One named graph input or output: dtype name and shape (ints fixed, names dynamic)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"TensorSpec {self.name}: dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if not all(isinstance(s, str) or (type(s) is int and s >= 0) for s in self.shape):
            raise ValueError(f"TensorSpec {self.name}: shape entries must be sizes or names, got {self.shape!r:.80}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {axis: size for axis, size in enumerate(self.shape) if isinstance(size, str)}

    def describe(self) -> str:
        return f"{self.dtype}[{', '.join(str(s) for s in self.shape)}]"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), str(data["dtype"]), tuple(data["shape"]))

    @classmethod
    def of(cls, name: str, value: Tensor, dynamic: Mapping[int, str]) -> TensorSpec:
        """The spec of an example tensor, with the axes in `dynamic` named instead of fixed."""
        shape = tuple(dynamic.get(axis, int(size)) for axis, size in enumerate(value.shape))
        return cls(name, dtype_name(value.dtype), shape)


@dataclass(frozen=True)
class GraphSpec:
    """A graph's name with its ordered inputs and outputs."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def input(self, name: str) -> TensorSpec:
        for s in self.inputs:
            if s.name == name:
                return s
        raise InputError(f"graph {self.name}: no input {name!r} (inputs: {', '.join(self.input_names)})")

    def check_inputs(self, feed: Mapping[str, Any]) -> dict[str, int]:
        """Raise `InputError` naming the first input that is missing, unknown, of the wrong dtype or
        shape, non-finite, or whose dynamic axis disagrees with another input's; return the dynamic sizes."""
        unknown = sorted(set(feed) - set(self.input_names))
        if unknown:
            raise InputError(
                f"graph {self.name}: unknown input {unknown[0]!r}; expected inputs: {', '.join(self.input_names)}"
            )
        bound: dict[str, tuple[int, str]] = {}
        for spec in self.inputs:
            if spec.name not in feed:
                raise InputError(f"graph {self.name}: missing input {spec.name!r} ({spec.describe()})")
            _check_tensor(self.name, spec, feed[spec.name], bound)
        _check_finite(self.name, {s.name: feed[s.name] for s in self.inputs if s.dtype.startswith("float")})
        return {axis: size for axis, (size, _) in bound.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GraphSpec:
        try:
            return cls(
                str(data["name"]),
                tuple(TensorSpec.from_dict(s) for s in data["inputs"]),
                tuple(TensorSpec.from_dict(s) for s in data["outputs"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"graph spec: expected name, inputs and outputs, got {sorted(data)} ({exc})") from exc

    @classmethod
    def from_json(cls, text: str) -> GraphSpec:
        return cls.from_dict(json.loads(text))


def _check_tensor(graph: str, spec: TensorSpec, value: Any, bound: dict[str, tuple[int, str]]) -> None:
    where = f"graph {graph}: input {spec.name!r}"
    if isinstance(value, Tensor):
        dtype, shape = dtype_name(value.dtype) if value.dtype in _NAMES else str(value.dtype), tuple(value.shape)
    elif isinstance(value, np.ndarray):
        dtype, shape = str(value.dtype), tuple(value.shape)
    else:
        raise InputError(f"{where}: expected a torch.Tensor or numpy array, got {type(value).__name__}")
    if dtype != spec.dtype:
        raise InputError(f"{where}: expected dtype {spec.dtype} ({spec.describe()}), got {dtype}")
    if len(shape) != len(spec.shape):
        raise InputError(f"{where}: expected shape {spec.describe()}, got {list(shape)}")
    for want, got in zip(spec.shape, shape, strict=True):
        if isinstance(want, int) and want != got:
            raise InputError(f"{where}: expected shape {spec.describe()}, got {list(shape)}")
        if isinstance(want, str):
            if got < 1:
                raise InputError(f"{where}: axis {want} must be at least 1, got shape {list(shape)}")
            size, owner = bound.setdefault(want, (got, spec.name))
            if size != got:
                raise InputError(f"{where}: axis {want} is {got} but input {owner!r} has {want} {size}")


def _check_finite(graph: str, values: Mapping[str, Tensor | np.ndarray]) -> None:
    """Raise `InputError` naming the first input holding NaN or infinity.

    Cheap enough for every call: a sum is finite exactly when every value is, unless it overflows, so the
    fast path is one vectorised sum per input and one host read for all of them (an element-wise `isfinite`
    costs up to ten times more on a batch of frames). Only a sum that is not finite (a bad value, or an
    overflow) pays for the element-wise check, which names the input and counts what it found.
    """
    sums = [_sum(value) for value in values.values()]
    if not sums or (len({s.device for s in sums}) == 1 and bool(torch.isfinite(torch.stack(sums)).all())):
        return
    for name, value in values.items():
        tensor = value if isinstance(value, Tensor) else torch.from_numpy(np.array(value))
        nan, inf = int(torch.isnan(tensor).sum()), int(torch.isinf(tensor).sum())
        if nan or inf:
            raise InputError(
                f"graph {graph}: input {name!r}: expected finite values, got {nan} NaN and {inf} infinite "
                f"of {tensor.numel()}"
            )


def _sum(value: Tensor | np.ndarray) -> Tensor:
    """The sum in float32 (float16 sums overflow early), as a 0-d tensor on the value's device."""
    if isinstance(value, Tensor):
        return value.sum(dtype=torch.float32)
    return torch.tensor(np.sum(value, dtype=np.float32))
