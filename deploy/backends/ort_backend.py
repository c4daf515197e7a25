"""The onnxruntime backend: CPU, CUDA and TensorRT execution providers, never a silent fallback.

onnxruntime quietly drops an execution provider it cannot load (a missing CUDA
library is a log line, and the session runs on the CPU), so after creating the
session this backend checks `get_providers()` and refuses to run when the
requested provider is not the first active one. On CUDA the inputs and
outputs stay on the GPU through IO binding on torch tensors.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from deploy.artifact import Artifact
from deploy.base import ArtifactError, BackendUnavailable, Runtime
from deploy.spec import GraphSpec

log = logging.getLogger(__name__)

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
_NUMPY = {torch.float32: np.float32, torch.float16: np.float16, torch.int64: np.int64, torch.bool: np.bool_}


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable(
            "onnxruntime is not installed (install the project's `cpu` extra, or `gpu` for CUDA)"
        ) from exc
    return onnxruntime


def provider_options(kind: str, device_index: int, precision: str, cache_dir: Path | None) -> list[Any]:
    """The provider list for `kind` ("cpu", "cuda", "tensorrt"), the requested one first."""
    if kind == "cpu":
        if precision != "fp32":
            raise ValueError("onnxruntime on the CPU runs fp32 only; fp16 is for the TensorRT provider")
        return ["CPUExecutionProvider"]
    cuda = ("CUDAExecutionProvider", {"device_id": device_index})
    if kind == "cuda":
        if precision != "fp32":
            raise ValueError("onnxruntime's CUDA provider runs the fp32 graph; fp16 is for the TensorRT provider")
        return [cuda, "CPUExecutionProvider"]
    trt: dict[str, Any] = {"device_id": device_index, "trt_fp16_enable": precision == "fp16"}
    if cache_dir is not None:
        trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir))
    return [("TensorrtExecutionProvider", trt), cuda, "CPUExecutionProvider"]


def _provider_kind(device: str) -> tuple[str, int]:
    """ "cpu" | "cuda[:N]" | "tensorrt[:N]" -> (provider kind, device index)."""
    kind, _, index = device.partition(":")
    if kind not in PROVIDERS:
        raise ValueError(f"onnxruntime device {device!r}: expected cpu, cuda[:N] or tensorrt[:N]")
    return kind, int(index or 0)


class OrtRuntime(Runtime):
    """One onnxruntime `InferenceSession` on one graph."""

    backend: ClassVar[str] = "onnxruntime"

    def __init__(self, session: Any, spec: GraphSpec, kind: str, device: torch.device):
        super().__init__(spec, device)
        self.session, self.kind = session, kind
        self.graph_inputs = [i.name for i in session.get_inputs()]  # the export drops inputs a graph never reads

    @classmethod
    def from_artifact(
        cls,
        art: Artifact,
        graph: str,
        device: str = "cpu",
        precision: str = "fp32",
        threads: int | None = None,
        cache_dir: str | Path | None = None,
    ) -> OrtRuntime:
        ort = _import_onnxruntime()
        kind, index = _provider_kind(device)
        providers = provider_options(kind, index, precision, Path(cache_dir) if cache_dir else None)
        wanted = PROVIDERS[kind]
        if wanted not in ort.get_available_providers():
            raise BackendUnavailable(
                f"onnxruntime {ort.__version__}: {wanted} is not in this build "
                f"(available: {', '.join(ort.get_available_providers())})"
            )
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        path = art.graph_path(graph)
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            raise ArtifactError(f"onnxruntime could not load {path}: {exc}") from exc
        active = session.get_providers()
        if not active or active[0] != wanted:
            raise BackendUnavailable(
                f"onnxruntime: {wanted} was requested but the session runs on {active} "
                "(a missing CUDA/TensorRT library makes onnxruntime fall back silently)"
            )
        return cls(session, art.spec(graph), kind, torch.device("cpu" if kind == "cpu" else f"cuda:{index}"))

    def _run(self, feed: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.kind == "cpu":
            arrays = self.session.run(self.spec.output_names, {n: feed[n].numpy() for n in self.graph_inputs})
            return {name: torch.from_numpy(a) for name, a in zip(self.spec.output_names, arrays, strict=True)}
        return self._run_bound(feed)

    def _run_bound(self, feed: dict[str, Tensor]) -> dict[str, Tensor]:
        """GPU inputs and outputs bound in place: no host round trip."""
        # The feed is checked already (`Runtime.run`): read the dynamic sizes off it for the output shapes.
        sizes = {axis: feed[s.name].shape[i] for s in self.spec.inputs for i, axis in s.dynamic_axes.items()}
        binding = self.session.io_binding()
        for name in self.graph_inputs:
            t = feed[name]
            binding.bind_input(name, "cuda", self.device.index or 0, _NUMPY[t.dtype], tuple(t.shape), t.data_ptr())
        outputs = {}
        for spec in self.spec.outputs:
            shape = tuple(sizes[s] if isinstance(s, str) else s for s in spec.shape)
            out = torch.empty(shape, dtype=spec.torch_dtype, device=self.device)
            binding.bind_output(spec.name, "cuda", self.device.index or 0, _NUMPY[out.dtype], shape, out.data_ptr())
            outputs[spec.name] = out
        torch.cuda.current_stream(self.device).synchronize()  # inputs written by torch must be ready
        self.session.run_with_iobinding(binding)
        return outputs

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "providers": self.session.get_providers()}
