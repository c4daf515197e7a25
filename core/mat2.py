"""Batches of 2x2 matrices as four tensors: products and sums written out per entry.

Used where many small blocks are multiplied (forecast covariances, Cholesky
factors): the written-out form runs as plain elementwise ops in eager torch,
in exported ONNX graphs and in fused compiled kernels alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Mat2:
    """A batch of 2x2 matrices [[a, b], [c, d]] held as four equally shaped (or broadcastable) tensors.

    The predictor and planner multiply thousands of 2x2 blocks (covariances, Cholesky factors).
    Both tensor forms are slow in onnxruntime on the CPU: a batched MatMul runs one tiny GEMM
    per block, and broadcasting columns against rows ([..., 2, 1] * [..., 1, 2]) takes its slow
    generic broadcast path. Written out per entry, every op is a plain elementwise op."""

    a: Tensor
    b: Tensor
    c: Tensor
    d: Tensor

    @classmethod
    def of(cls, m: Tensor) -> Mat2:
        return cls(m[..., 0, 0], m[..., 0, 1], m[..., 1, 0], m[..., 1, 1])

    def tensor(self) -> Tensor:
        return torch.stack((torch.stack((self.a, self.b), -1), torch.stack((self.c, self.d), -1)), -2)

    def mm(self, o: Mat2) -> Mat2:
        """The product self o (a method, not `@`: torch.compile cannot trace `@` on a user class)."""
        return Mat2(self.a * o.a + self.b * o.c, self.a * o.b + self.b * o.d,
                     self.c * o.a + self.d * o.c, self.c * o.b + self.d * o.d)  # fmt: skip

    def __add__(self, o: Mat2) -> Mat2:
        return Mat2(self.a + o.a, self.b + o.b, self.c + o.c, self.d + o.d)

    def __sub__(self, o: Mat2) -> Mat2:
        return Mat2(self.a - o.a, self.b - o.b, self.c - o.c, self.d - o.d)

    @property
    def T(self) -> Mat2:  # noqa: N802  (the transpose, as on tensors)
        return Mat2(self.a, self.c, self.b, self.d)

    @classmethod
    def outer(cls, x: Tensor, y: Tensor) -> Mat2:
        """The outer product of the vectors (x, y) with themselves."""
        return cls(x * x, x * y, y * x, y * y)

    def cumsum(self, dim: int) -> Mat2:
        return Mat2(self.a.cumsum(dim), self.b.cumsum(dim), self.c.cumsum(dim), self.d.cumsum(dim))
