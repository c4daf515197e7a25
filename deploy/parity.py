"""Parity of a backend against torch on the same exported graphs, reported per output.

Error of a float output: its maximum absolute difference divided by its scale,
the range of the quantity. For probabilities (fields declared `prob` in their
contract) that range is [0, 1], so the scale is 1; for everything else it is
the reference's largest magnitude. An elementwise ratio would be meaningless
where the reference is near zero (the existence of an empty slot), and dividing
by the largest value of an output whose values are all tiny (a scene with no
objects) would judge float32 noise, not the backend. Integer and boolean
outputs report the fraction of elements that differ.

Tracker slots are unordered: two tracks born in the same step with existences
equal to 4 digits can take each other's slots when float32 rounding differs.
Outputs holding tracker slots are therefore compared twice: as produced
(`raw`), and after matching the candidate's slots to the reference's per batch
element (the assignment minimising the distance between the slots' current
tracks), with history entries the contract marks invalid (what a slot's
previous track left) not judged: what parity means for a set of tracks.

Inputs come from random valid inputs (`deploy.examples.random_inputs`) and
recorded simulator frames (`deploy.examples.recorded_inputs`), at several batch
sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from deploy.artifact import Artifact
from deploy.base import Runtime
from deploy.examples import random_inputs, recorded_inputs
from deploy.runtime import open_runtime
from perception.tracking.state import TrackerState
from perception.types import Detections, Tracks
from planning.types import Plan
from prediction.types import Forecast
from stack.model import Stack

TOLERANCE = 1e-4


def output_error(candidate: Tensor, reference: Tensor, probability: bool = False) -> float:
    """Max error over the output's scale (float) or mismatch fraction (int, bool); see the module docstring."""
    candidate = candidate.detach().cpu()
    reference = reference.detach().cpu()
    if candidate.shape != reference.shape:
        raise ValueError(f"output shapes differ: {tuple(candidate.shape)} vs reference {tuple(reference.shape)}")
    if reference.numel() == 0:
        return 0.0
    if not reference.is_floating_point():
        return float((candidate != reference).float().mean())
    diff = (candidate.double() - reference.double()).abs().max()
    if probability:
        return float(diff)
    return float(diff / reference.double().abs().max().clamp_min(torch.finfo(torch.float32).tiny))


def _probability_outputs() -> set[str]:
    """Flat names of every contract field declared a probability, under the prefixes graphs use."""
    prefixes = {Detections: ["detections"], Tracks: ["tracks"], Forecast: ["forecast"], Plan: ["plan"],
                TrackerState: ["state.tracker", "new_state.tracker"]}  # fmt: skip
    return {
        f"{prefix}.{f.name}"
        for contract, heads in prefixes.items()
        for prefix in heads
        for f in contract.tensor_fields()
        if f.metadata["tensor"]["prob"]
    }


PROBABILITIES = _probability_outputs()
SLOT_PREFIXES = ("tracks.", "new_state.tracker.")


def match_slots(candidate: dict[str, Tensor], reference: dict[str, Tensor]) -> dict[str, Tensor]:
    """`candidate` with its tracker slots reordered to best match `reference`'s, per batch element: the
    assignment minimising the summed absolute difference of every float tensor held per slot."""
    out = dict(candidate)
    for prefix in SLOT_PREFIXES:
        fields = _slot_fields(reference, prefix)
        if not fields:
            continue
        ref = torch.cat([_per_slot(reference[n]) for n in fields], dim=2)  # (B, A, F)
        cand = torch.cat([_per_slot(candidate[n]) for n in fields], dim=2)
        cost = (ref[:, :, None] - cand[:, None]).abs().sum(-1)  # (B, A, A)
        order = torch.stack([torch.as_tensor(linear_sum_assignment(c.numpy())[1]) for c in cost])  # (B, A)
        slots = ref.shape[1]
        for name, value in candidate.items():
            if name.startswith(prefix) and value.dim() >= 2 and value.shape[1] == slots:
                index = order.to(value.device).reshape(*order.shape, *([1] * (value.dim() - 2))).expand_as(value)
                out[name] = value.gather(1, index)
    return out


def _per_slot(value: Tensor) -> Tensor:
    return value.detach().cpu().double().reshape(*value.shape[:2], -1)


def _slot_fields(outputs: dict[str, Tensor], prefix: str) -> list[str]:
    """Names of the float outputs under `prefix` that describe each slot's current track ([B, A, ...]).
    The history buffers are left out: entries not marked valid hold whatever the slot held before."""
    key = outputs.get(f"{prefix}existence")
    if key is None:
        return []
    slots = key.shape[1]
    return [n for n, v in outputs.items() if n.startswith(prefix) and v.is_floating_point() and v.dim() >= 2
            and v.shape[1] == slots and "history" not in n]  # fmt: skip


def mask_stale_history(outputs: dict[str, Tensor], valid_from: dict[str, Tensor]) -> dict[str, Tensor]:
    """`outputs` with the history entries that `valid_from` marks invalid set to 0: by the contract they
    are unspecified (a slot keeps what its previous track left there), so parity does not judge them."""
    out = dict(outputs)
    for name, value in outputs.items():
        if not (name.endswith("history_mean") or name.endswith("history_cov")):
            continue
        valid = valid_from[name.rsplit(".", 1)[0] + ".history_valid"]
        mask = valid.reshape(*valid.shape, *([1] * (value.dim() - valid.dim())))
        out[name] = torch.where(mask, value, torch.zeros_like(value))
    return out


@dataclass(frozen=True)
class ParityCase:
    """One graph on one feed: per-output errors with tracker slots matched (`errors`) and as produced (`raw`)."""

    graph: str
    source: str
    batch: int
    errors: dict[str, float]
    raw: dict[str, float]

    @property
    def worst(self) -> tuple[str, float]:
        name = max(self.errors, key=self.errors.get)
        return name, self.errors[name]


def compare(reference: Runtime, candidate: Runtime, feed: dict[str, Tensor]) -> tuple[dict[str, float], dict]:
    """Per-output errors of `candidate` against `reference` on one feed (the spec's inputs only):
    (tracker slots matched, slot order as produced)."""
    inputs = {name: feed[name] for name in reference.spec.input_names}
    want, got = reference.run(inputs), candidate.run(inputs)
    names = reference.spec.output_names
    matched = mask_stale_history(match_slots(got, want), want)
    return _errors(matched, mask_stale_history(want, want), names), _errors(got, want, names)


def _errors(got: dict[str, Tensor], want: dict[str, Tensor], names: list[str]) -> dict[str, float]:
    return {name: output_error(got[name], want[name], name in PROBABILITIES) for name in names}


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
                cases.append(ParityCase(graph, source, batch, *compare(reference, candidate, feed)))
    return cases


def _worst(cases: Sequence[ParityCase], field: str) -> dict[str, dict[str, float]]:
    worst: dict[str, dict[str, float]] = {}
    for case in cases:
        per_graph = worst.setdefault(case.graph, {})
        for name, error in getattr(case, field).items():
            per_graph[name] = max(per_graph.get(name, 0.0), error)
    return worst


def summarise(cases: Sequence[ParityCase], tolerance: float = TOLERANCE) -> dict[str, Any]:
    """The worst error of every (graph, output) over all cases, slots matched (`worst`, what `passed`
    judges) and as produced (`worst_raw`)."""
    worst = _worst(cases, "errors")
    passed = all(err <= tolerance for outputs in worst.values() for err in outputs.values())
    return {"tolerance": tolerance, "passed": passed, "worst": worst, "worst_raw": _worst(cases, "raw")}


def format_table(cases: Sequence[ParityCase]) -> str:
    """One row per (graph, output): the worst error over sources and batches, slots matched and raw."""
    summary = summarise(cases)
    lines = ["| graph | output | max error | raw slot order |", "|---|---|---:|---:|"]
    for graph, outputs in summary["worst"].items():
        for name, error in outputs.items():
            lines.append(f"| {graph} | {name} | {error:.2e} | {summary['worst_raw'][graph][name]:.2e} |")
    return "\n".join(lines)
