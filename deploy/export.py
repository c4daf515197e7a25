"""`drivestack export`: a stack checkpoint to an artifact folder of ONNX graphs (`deploy.artifact`).

Each graph of `deploy.graphs` is traced with `torch.onnx.export` on an example
batch larger than one (a batch of one lets the tracer bake the batch size into
reshapes), with the batch axis (and the noise's sample axis) marked dynamic.
Every file carries its own description as ONNX metadata (`drivestack.graph`,
`drivestack.version`, `drivestack.spec`, `drivestack.config`), passes
`onnx.checker`, and is written atomically; the manifest comes last, so a
killed export never leaves a manifest that points at missing graphs.
"""

from __future__ import annotations

import datetime
import json
import logging
import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import onnx
import torch

from core.io import atomic_copy, atomic_write_bytes, atomic_write_text, sha256_file
from deploy.artifact import CHECKPOINT, FORMAT, MANIFEST, Artifact
from deploy.base import ArtifactError
from deploy.examples import recorded_inputs
from deploy.graphs import GRAPH_NAMES, FlatGraph, Named, dynamic_axes, graph_defs
from deploy.spec import GraphSpec, TensorSpec
from stack.model import Stack

log = logging.getLogger(__name__)

OPSET = 17
EXAMPLE_BATCH = 3


def drivestack_version() -> str:
    try:
        return version("drivestack")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def graph_spec(graph: FlatGraph, example: Named, outputs: Sequence[torch.Tensor]) -> GraphSpec:
    """The spec of `graph` from its example inputs and the outputs they produced."""
    d = graph.definition
    inputs = tuple(TensorSpec.of(name, example[name], dynamic_axes(name)) for name in d.inputs)
    outs = tuple(TensorSpec.of(name, value, {0: "batch"}) for name, value in zip(d.outputs, outputs, strict=True))
    return GraphSpec(d.name, inputs, outs)


def export_graph(stack: Stack, name: str, example: Named, path: Path, opset: int = OPSET) -> GraphSpec:
    """Trace graph `name` of `stack` on `example` into the ONNX file `path`; return its spec."""
    graph = FlatGraph(stack, graph_defs(stack)[name]).eval()
    args = tuple(example[n] for n in graph.definition.inputs)
    with torch.no_grad():
        outputs = graph(*args)
    spec = graph_spec(graph, example, outputs)
    axes = {s.name: s.dynamic_axes for s in (*spec.inputs, *spec.outputs)}
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about every Python bool and int it freezes; those are the fixed sizes by design.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The GRU exporter warns that a batch other than 1 may fix the batch; tests/deploy runs every
        # graph at several batch sizes to prove it does not.
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size other than 1")
        torch.onnx.export(
            graph, args, str(tmp), input_names=spec.input_names, output_names=spec.output_names,
            dynamic_axes=axes, opset_version=opset, dynamo=False, do_constant_folding=True,
        )  # fmt: skip
    model = onnx.load(str(tmp))
    _set_metadata(model, spec, stack)
    onnx.checker.check_model(model, full_check=True)
    tmp.unlink()
    atomic_write_bytes(path, model.SerializeToString())
    return spec


def _set_metadata(model: onnx.ModelProto, spec: GraphSpec, stack: Stack) -> None:
    meta = {
        "drivestack.graph": spec.name,
        "drivestack.version": drivestack_version(),
        "drivestack.spec": spec.to_json(),
        "drivestack.config": json.dumps(stack.cfg.to_dict(), sort_keys=True),
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name, model.producer_version = "drivestack", meta["drivestack.version"]


def export_stack(
    checkpoint: str | Path,
    out: str | Path,
    graphs: Sequence[str] = GRAPH_NAMES,
    example_batch: int = EXAMPLE_BATCH,
    opset: int = OPSET,
    argmax: bool = False,
) -> Artifact:
    """Export `graphs` of the stack in `checkpoint` (its argmax ablation with `argmax`) into the folder
    `out`; return the opened artifact."""
    unknown = sorted(set(graphs) - set(GRAPH_NAMES))
    if unknown:
        raise ValueError(f"export graphs: unknown {unknown}; expected names from {', '.join(GRAPH_NAMES)}")
    if example_batch < 2:
        raise ValueError(
            f"export example_batch: expected >= 2 (a batch of 1 can fix the batch axis), got {example_batch}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stack = Stack.load(checkpoint, argmax=argmax)
    example = recorded_inputs(stack, example_batch)
    entries = _kept_entries(out, sha256_file(Path(checkpoint)), stack)
    for name in graphs:
        log.info("exporting %s", name)
        spec = export_graph(stack, name, example, out / f"{name}.onnx", opset)
        entries[name] = {"file": f"{name}.onnx", "sha256": sha256_file(out / f"{name}.onnx"), "spec": spec.to_dict()}
    atomic_copy(checkpoint, out / CHECKPOINT)
    manifest = {
        "format": FORMAT,
        "drivestack_version": drivestack_version(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "opset": opset,
        "example_batch": example_batch,
        "config": stack.cfg.to_dict(),
        "checkpoint": {"file": CHECKPOINT, "sha256": sha256_file(out / CHECKPOINT), "source": str(checkpoint)},
        "graphs": entries,
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return Artifact.open(out)


def _kept_entries(out: Path, checkpoint_sha256: str, stack: Stack) -> dict:
    """The manifest entries of graphs already exported into `out` from the same checkpoint and config,
    so that exporting a few graphs again keeps the others; nothing from another checkpoint is kept."""
    try:
        old = Artifact.open(out).manifest
    except ArtifactError:
        return {}
    same_checkpoint = old.get("checkpoint", {}).get("sha256") == checkpoint_sha256
    same = same_checkpoint and old["config"] == _jsonable(stack.cfg.to_dict())
    return dict(old["graphs"]) if same else {}


def _jsonable(data: dict) -> dict:
    return json.loads(json.dumps(data))
