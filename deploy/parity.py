"""Parity of a backend against torch on the same exported graphs, reported per output.

The error of a float output is its maximum absolute difference divided by the
reference's largest magnitude (relative to the output's scale: an elementwise
ratio is meaningless where the reference is near zero, as probabilities of
empty slots are). Integer and boolean outputs report the fraction of elements
that differ. Inputs come from two sources: random valid inputs
(`deploy.examples.random_inputs`) and recorded simulator frames
(`deploy.examples.recorded_inputs`), each at several batch sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from deploy.artifact import Artifact
from deploy.examples import random_inputs, recorded_inputs
from deploy.runtime import Runtime, open_runtime
from stack.model import Stack

TOLERANCE = 1e-4


def output_error(candidate: Tensor, reference: Tensor) -> float:
    """Scale-relative max error (float) or mismatch fraction (int, bool); see the module docstring."""
    candidate = candidate.detach().cpu()
    reference = reference.detach().cpu()
    if candidate.shape != reference.shape:
        raise ValueError(f"output shapes differ: {tuple(candidate.shape)} vs reference {tuple(reference.shape)}")
    if not reference.is_floating_point():
        return float((candidate != reference).float().mean()) if reference.numel() else 0.0
    scale = reference.double().abs().max().clamp_min(torch.finfo(torch.float32).tiny)
    return float((candidate.double() - reference.double()).abs().max() / scale) if reference.numel() else 0.0


@dataclass(frozen=True)
class ParityCase:
    graph: str
    source: str
    batch: int
    errors: dict[str, float]

    @property
    def worst(self) -> tuple[str, float]:
        name = max(self.errors, key=self.errors.get)
        return name, self.errors[name]


def compare(reference: Runtime, candidate: Runtime, feed: dict[str, Tensor]) -> dict[str, float]:
    """Per-output errors of `candidate` against `reference` on one feed (the spec's inputs only)."""
    inputs = {name: feed[name] for name in reference.spec.input_names}
    want, got = reference.run(inputs), candidate.run(inputs)
    return {name: output_error(got[name], want[name]) for name in reference.spec.output_names}


def parity(
    artifact: str | Path,
    backend: str = "onnxruntime",
    device: str = "cpu",
    graphs: Sequence[str] | None = None,
    batches: Sequence[int] = (1, 4, 16),
    seed: int = 0,
) -> list[ParityCase]:
    """Every (graph, input source, batch) case of `backend` on `device` against torch on the CPU."""
    art = Artifact.open(artifact)
    stack = Stack.load(art.checkpoint_path())
    names = list(graphs or art.graph_names)
    runtimes = {g: (open_runtime(artifact, g, "torch"), open_runtime(artifact, g, backend, device)) for g in names}
    cases = []
    for batch in batches:
        sources = {
            "random": random_inputs(stack, batch, seed=seed),
            "recorded": recorded_inputs(stack, batch, seed=seed + 100),
        }
        for source, feed in sources.items():
            for graph, (reference, candidate) in runtimes.items():
                cases.append(ParityCase(graph, source, batch, compare(reference, candidate, feed)))
    return cases


def summarise(cases: Sequence[ParityCase], tolerance: float = TOLERANCE) -> dict[str, Any]:
    """The worst error of every (graph, output) over all cases, and whether each float output is within
    `tolerance` and each discrete one matches exactly."""
    worst: dict[str, dict[str, float]] = {}
    for case in cases:
        for name, error in case.errors.items():
            per_graph = worst.setdefault(case.graph, {})
            per_graph[name] = max(per_graph.get(name, 0.0), error)
    passed = all(err <= tolerance for outputs in worst.values() for err in outputs.values())
    return {"tolerance": tolerance, "passed": passed, "worst": worst}


def format_table(cases: Sequence[ParityCase]) -> str:
    """One row per (graph, output): the worst error over sources and batches."""
    rows = summarise(cases)["worst"]
    lines = ["| graph | output | max error |", "|---|---|---:|"]
    for graph, outputs in rows.items():
        for name, error in outputs.items():
            lines.append(f"| {graph} | {name} | {error:.2e} |")
    return "\n".join(lines)
