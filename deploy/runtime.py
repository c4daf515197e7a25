"""Open a runtime for an exported graph on one of its backends: torch, onnxruntime or TensorRT (the interface
they share, `Runtime`, and the deploy errors live in the leaf module `deploy.base`).

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

from pathlib import Path
from typing import Any

from deploy.base import BACKENDS, PRECISIONS, Runtime


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
