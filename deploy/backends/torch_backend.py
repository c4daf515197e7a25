"""The torch backend: the artifact's checkpoint run eagerly through the same flat graphs that were exported.

It is the reference the other backends are compared against, and the eager
baseline of the latency benchmark (`compile=True` wraps the graph in
`torch.compile`; on CUDA, `cuda_graph=True` replays a captured CUDA graph).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from deploy.artifact import Artifact
from deploy.base import BackendUnavailable, Runtime
from deploy.graphs import FlatGraph, flat_graph
from deploy.spec import GraphSpec
from planning.planner import unchecked
from stack.model import Stack


class TorchRuntime(Runtime):
    """Runs a `FlatGraph` eagerly (or compiled) under `torch.inference_mode`."""

    backend: ClassVar[str] = "torch"

    def __init__(
        self, graph: FlatGraph, spec: GraphSpec, device: torch.device, compile: bool = False, cuda_graph: bool = False
    ):
        super().__init__(spec, device)
        if cuda_graph and device.type != "cuda":
            raise BackendUnavailable(f"torch backend: CUDA graphs need a CUDA device, got {device}")
        self.graph = graph.to(device).eval()
        self.compiled, self.cuda_graph = compile, cuda_graph
        if compile:
            # The predictor's history GRU: without this, dynamo breaks the graph around it.
            torch._dynamo.config.allow_rnn = True
            # Every graph is a FlatGraph.forward, one code object: each (graph, input shapes) pair is a
            # recompile of it, and past the default limit of 8 dynamo silently runs eager instead.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        self._forward = torch.compile(self.graph, dynamic=False) if compile else self.graph
        self._captured: dict[tuple, _Captured] = {}

    @classmethod
    def from_artifact(
        cls, art: Artifact, graph: str, device: str = "cpu", compile: bool = False, cuda_graph: bool = False
    ) -> TorchRuntime:
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(f"torch backend on {device}: torch sees no CUDA device")
        spec = art.spec(graph)
        stack = Stack.load(art.checkpoint_path(), device=dev)
        return cls(flat_graph(stack, graph), spec, dev, compile, cuda_graph)

    @torch.inference_mode()
    def _run(self, feed: dict[str, Tensor]) -> dict[str, Tensor]:
        args = [feed[name] for name in self.graph.definition.inputs]
        if self.cuda_graph:
            key = tuple((tuple(a.shape), a.dtype) for a in args)
            if key not in self._captured:
                self._captured[key] = _Captured(self._forward, args)
            outputs = self._captured[key].replay(args)
        else:
            outputs = self._forward(*args)
        return dict(zip(self.graph.definition.outputs, outputs, strict=True))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "compiled": self.compiled, "cuda_graph": self.cuda_graph}


class _Captured:
    """One CUDA graph of the forward pass for one set of input shapes: inputs are copied into static
    buffers and the captured kernels replayed, with no Python or launch overhead per kernel."""

    WARMUP = 3

    def __init__(self, forward: Callable[..., tuple[Tensor, ...]], example: list[Tensor]):
        self.inputs = [a.clone() for a in example]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), unchecked():  # warm-up allocations happen outside the capture
            for _ in range(self.WARMUP):
                forward(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), unchecked():
            self.outputs = forward(*self.inputs)

    def replay(self, args: list[Tensor]) -> tuple[Tensor, ...]:
        for static, value in zip(self.inputs, args, strict=True):
            static.copy_(value)
        self.graph.replay()
        return tuple(out.clone() for out in self.outputs)  # the next replay overwrites the static outputs
