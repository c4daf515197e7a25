"""One interface over the backends that run an exported graph: torch, onnxruntime and TensorRT.

    runtime = open_runtime("runs/export", "stack_step", backend="onnxruntime", device="cpu")
    outputs = runtime.run({"frame.bev": ..., "sigma": ..., ...})   # named torch tensors in and out

Every backend checks its feed against the graph's `GraphSpec` before it runs
(a missing, unknown, misshapen or mistyped input is an `InputError` naming
it), returns torch tensors on the runtime's device, and refuses to start when
what was asked for is not what would run: onnxruntime without the requested
execution provider active, TensorRT or a GPU missing, are `BackendUnavailable`
errors, never a silent fallback to the CPU.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path
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


def open_runtime(
    artifact: str | Path,
    graph: str,
    backend: str = "onnxruntime",
    device: str = "cpu",
    precision: str = "fp32",
    **options: Any,
) -> Runtime:
    """A runtime for `graph` of the exported `artifact` folder (`deploy.export.export_stack`).

    Args:
        backend: "torch" (the checkpoint saved in the artifact, eager), "onnxruntime" or "tensorrt".
        device: "cpu", "cuda" or "cuda:N"; for onnxruntime, "tensorrt" selects its TensorRT
            execution provider (on CUDA).
        precision: "fp32" or "fp16" (TensorRT and onnxruntime's TensorRT provider only).
        options: backend-specific (e.g. `threads` for onnxruntime, `cache_dir` for TensorRT).
    """
    from deploy.artifact import Artifact

    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    art = Artifact.open(artifact)
    if backend == "torch":
        from deploy.backends.torch_backend import TorchRuntime

        if precision != "fp32":
            raise ValueError("precision fp16: the torch backend runs fp32 only")
        return TorchRuntime.from_artifact(art, graph, device, **options)
    if backend == "onnxruntime":
        from deploy.backends.ort_backend import OrtRuntime

        return OrtRuntime.from_artifact(art, graph, device, precision, **options)
    from deploy.backends.tensorrt_backend import TensorRTRuntime

    return TensorRTRuntime.from_artifact(art, graph, device, precision, **options)
