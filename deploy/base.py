"""The runtime interface every backend implements, and the errors of the deploy package: a leaf module, so
the backends (`deploy.backends`) build on it without importing the factory that imports them
(`deploy.runtime.open_runtime`).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from deploy.spec import GraphSpec

BACKENDS = ("torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16")


class BackendUnavailable(RuntimeError):
    """The requested backend, execution provider or device is not available here."""


class ArtifactError(ValueError):
    """An exported artifact (manifest, ONNX graph, engine) is missing, corrupted or inconsistent."""


class Runtime(abc.ABC):
    """Runs one graph. Subclasses implement `_run` on a feed that `run` has already checked."""

    backend: ClassVar[str]

    def __init__(self, spec: GraphSpec, device: torch.device):
        self.spec, self.device = spec, device

    @property
    def name(self) -> str:
        return self.spec.name

    def run(self, inputs: Mapping[str, Tensor | np.ndarray]) -> dict[str, Tensor]:
        """Named inputs (every input of the spec, nothing else) to named outputs on `self.device`."""
        self.spec.check_inputs(inputs)
        feed = {name: _as_tensor(value, self.device) for name, value in inputs.items()}
        return self._run(feed)

    @abc.abstractmethod
    def _run(self, feed: dict[str, Tensor]) -> dict[str, Tensor]:
        """Run on a checked feed of tensors on `self.device`; return every output of the spec."""

    def describe(self) -> dict[str, Any]:
        """What runs, for logs and benchmark tables."""
        return {"graph": self.name, "backend": self.backend, "device": str(self.device)}


def _as_tensor(value: Tensor | np.ndarray, device: torch.device) -> Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray) else value
    return tensor.to(device).contiguous()
