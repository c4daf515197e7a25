"""Float32 -> float16 conversion of an ONNX graph, for TensorRT's strongly typed networks.

TensorRT 11 removed the builder's FP16 flag: a network's precision is whatever
its tensors' dtypes say, so running a graph in fp16 means handing TensorRT an
fp16 graph. This module writes one from the fp32 export, without a new
dependency (onnxconverter-common would be one):

    fp16_model = convert_to_fp16(onnx.load("stack_step.onnx"))

* float32 initializers, `Constant` tensors and `ConstantOfShape` fill values
  become float16 (finite values clamped to +-65504; +-inf and NaN kept), `Cast`
  to FLOAT becomes `Cast` to FLOAT16, and value_info follows;
* graph inputs and outputs keep float32 (`keep_io_types`), with `Cast` nodes at
  the boundary, so a runtime's `GraphSpec` is unchanged;
* ops in `block_ops` stay float32 with `Cast` nodes around them, and so does
  every input or output whose ONNX schema has no float16 (`Range`, `Resize`'s
  scales): the result always type-checks;
* a constant, initializer or `Cast` becomes float16 only when every consumer
  wants float16; when some want float32 it stays float32 and the others read
  it through a `Cast`, so no value takes a lossy round trip through float16;
* `If` branches are converted with their parent graph; `Loop` and `Scan`
  subgraphs are refused with an error naming the node.
"""

from __future__ import annotations

import functools
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, helper, numpy_helper

log = logging.getLogger(__name__)

FP32, FP16 = TensorProto.FLOAT, TensorProto.FLOAT16
FP16_MAX = 65504.0
# Bumped whenever the conversion's output changes: TensorRT's engine cache key includes it.
CONVERTER_VERSION = 1

# Kept in float32 by default: the ops PyTorch's autocast runs in float32 on CUDA because float16 lacks their range or
# their accumulation precision (https://pytorch.org/docs/stable/amp.html, "CUDA Ops that can autocast to float32"):
# exp overflows above 11.1, log/reciprocal/pow of small values under- or overflow, and sums, products, norms and
# softmax-style reductions accumulate rounding over many terms. ReduceMean and InstanceNormalization (torch's
# group_norm) are reductions of the same kind. Matmuls, convolutions, the GRU and elementwise ops run in float16.
DEFAULT_BLOCK_OPS: tuple[str, ...] = (
    "Exp",
    "Log",
    "Pow",
    "Reciprocal",
    "Softplus",
    "Softmax",
    "LogSoftmax",
    "ReduceLogSumExp",
    "ReduceSum",
    "ReduceMean",
    "ReduceProd",
    "ReduceL2",
    "CumSum",
    "InstanceNormalization",
)

# Inputs that take either precision without changing the node's output dtype (shape readers, Cast): never cast.
_SHAPE_ONLY = {("Shape", 0), ("Size", 0), ("Cast", 0), ("CastLike", 0), ("EyeLike", 0)}
# Nodes whose float32 output can as well be float16: they take the precision their consumers want.
_RETYPABLE = {"Constant", "ConstantOfShape", "Cast"}
_SUBGRAPH_OPS = {"If"}


def convert_to_fp16(
    model: ModelProto, keep_io_types: bool = True, block_ops: Iterable[str] = DEFAULT_BLOCK_OPS
) -> ModelProto:
    """A copy of `model` whose float32 arithmetic runs in float16; see the module docstring.

    Raises:
        ValueError: a node has a subgraph other than `If`'s, or a value's dtype cannot be inferred.
    """
    model = _copy(model)
    rules = _Rules(_value_types(model), _opset(model), frozenset(block_ops))
    io = FP32 if keep_io_types else FP16
    graph = model.graph
    wants = rules.wants(graph, [io] * len(graph.output))
    names = _Names(model)
    inputs = {vi.name: io for vi in graph.input if rules.is_float(vi.name)}
    _convert_graph(graph, rules, wants, names, inputs, {}, [io] * len(graph.output), top=True)
    if not keep_io_types:
        for vi in [*graph.input, *graph.output]:
            if rules.is_float(vi.name):
                vi.type.tensor_type.elem_type = FP16
    return model


def _copy(model: ModelProto) -> ModelProto:
    copy = ModelProto()
    copy.CopyFrom(model)
    return copy


def _opset(model: ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), onnx.defs.onnx_opset_version())


def _value_types(model: ModelProto) -> dict[str, int]:
    """The elem type of every value in every scope, from ONNX shape inference on the fp32 model."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types: dict[str, int] = {}
    for graph in _graphs(inferred.graph):
        for vi in [*graph.input, *graph.output, *graph.value_info]:
            types[vi.name] = vi.type.tensor_type.elem_type
        types.update({init.name: init.data_type for init in graph.initializer})
        for node in graph.node:
            for name in node.output:
                if name and not types.get(name):
                    raise ValueError(f"fp16: cannot infer the dtype of {name!r}, output of node {_describe(node)}")
    return types


def _graphs(graph: GraphProto) -> Iterable[GraphProto]:
    """`graph` and every subgraph nested in it."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from _graphs(attr.g)


def _describe(node: NodeProto) -> str:
    return f"{node.name or '<unnamed>'!r} ({node.op_type})"


@dataclass(frozen=True)
class _Rules:
    """Which precision each node runs in and each of its float inputs and outputs takes."""

    types: dict[str, int]
    opset: int
    block_ops: frozenset[str]

    def is_float(self, name: str) -> bool:
        return bool(name) and self.types.get(name) == FP32

    def mode(self, node: NodeProto) -> int:
        standard = node.domain in ("", "ai.onnx")
        return FP32 if node.op_type in self.block_ops or not standard else FP16

    def input(self, node: NodeProto, index: int) -> int | None:
        """The precision input `index` must have; None for an input read for its shape only."""
        if (node.op_type, index) in _SHAPE_ONLY:
            return None
        return self._slot(node, index, is_input=True)

    def output(self, node: NodeProto, index: int) -> int:
        return self._slot(node, index, is_input=False)

    def retypable(self, node: NodeProto) -> bool:
        if node.op_type not in _RETYPABLE or node.op_type in self.block_ops:
            return False
        return node.op_type != "Cast" or helper.get_attribute_value(_attr(node, "to")) == FP32

    def _slot(self, node: NodeProto, index: int, is_input: bool) -> int:
        if self.mode(node) == FP32:
            return FP32
        allowed = _allowed_types(node.op_type, self.opset, index, is_input)
        return FP16 if "tensor(float16)" in allowed else FP32

    def wants(self, graph: GraphProto, output_precisions: list[int]) -> dict[str, set[int]]:
        """The precisions every float value's consumers want, in `graph` and its subgraphs."""
        wants: dict[str, set[int]] = defaultdict(set)
        self._collect(graph, output_precisions, wants)
        return wants

    def _collect(self, graph: GraphProto, output_precisions: list[int], wants: dict[str, set[int]]) -> None:
        for node in graph.node:
            for i, name in enumerate(node.input):
                want = self.input(node, i) if self.is_float(name) else None
                if want is not None:
                    wants[name].add(want)
            for branch in _subgraphs(node):
                self._collect(branch, [self.output(node, k) for k in range(len(node.output))], wants)
        for vi, precision in zip(graph.output, output_precisions, strict=True):
            if self.is_float(vi.name):
                wants[vi.name].add(precision)


@functools.cache
def _allowed_types(op_type: str, opset: int, index: int, is_input: bool) -> frozenset[str]:
    """The types the ONNX schema allows at one input or output of `op_type` (the last formal one if variadic)."""
    try:
        schema = onnx.defs.get_schema(op_type, opset)
    except onnx.defs.SchemaError:
        return frozenset({"tensor(float)"})
    formals = schema.inputs if is_input else schema.outputs
    formal = formals[min(index, len(formals) - 1)]
    constraints = {c.type_param_str: c.allowed_type_strs for c in schema.type_constraints}
    return frozenset(constraints.get(formal.type_str, [formal.type_str]))


def _subgraphs(node: NodeProto) -> list[GraphProto]:
    graphs = [attr.g for attr in node.attribute if attr.type == AttributeProto.GRAPH]
    if graphs and node.op_type not in _SUBGRAPH_OPS:
        raise ValueError(
            f"fp16: node {_describe(node)} has a subgraph; convert_to_fp16 handles If branches only "
            f"(convert with block_ops=..., or export without {node.op_type})"
        )
    return graphs


def _attr(node: NodeProto, name: str) -> AttributeProto | None:
    return next((a for a in node.attribute if a.name == name), None)


class _Names:
    """Fresh value and node names that collide with none in the model."""

    def __init__(self, model: ModelProto):
        self.used: set[str] = set()
        for graph in _graphs(model.graph):
            self.used.update(vi.name for vi in [*graph.input, *graph.output, *graph.value_info])
            self.used.update(init.name for init in graph.initializer)
            for node in graph.node:
                self.used.update([node.name, *node.input, *node.output])

    def fresh(self, base: str) -> str:
        name, n = base, 0
        while name in self.used:
            n += 1
            name = f"{base}_{n}"
        self.used.add(name)
        return name


def _convert_graph(
    graph: GraphProto,
    rules: _Rules,
    wants: dict[str, set[int]],
    names: _Names,
    stored: dict[str, int],
    casts: dict[tuple[str, int], str],
    output_precisions: list[int],
    top: bool = False,
) -> None:
    """Rewrite `graph` in place. `stored` maps each visible float value to the precision it is stored in, `casts`
    each already cast (value, precision) to its Cast's output; both are copied so a subgraph's stay inside it."""
    stored, casts = dict(stored), dict(casts)
    _convert_initializers(graph, wants, stored)
    nodes: list[NodeProto] = []
    for node in graph.node:
        for i, name in enumerate(node.input):
            want = rules.input(node, i) if rules.is_float(name) else None
            if want is not None and stored[name] != want:
                node.input[i] = _cast(name, want, casts, nodes, names)
        for branch in _subgraphs(node):
            branch_outputs = [rules.output(node, k) for k in range(len(node.output))]
            _convert_graph(branch, rules, wants, names, stored, casts, branch_outputs)
        for k, name in enumerate(node.output):
            if rules.is_float(name):
                stored[name] = _shared_precision(wants[name]) if rules.retypable(node) else rules.output(node, k)
        _retype_attributes(node, stored)
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    _convert_outputs(graph, rules, names, stored, casts, output_precisions, top)
    for vi in graph.value_info:
        if vi.name in stored:
            vi.type.tensor_type.elem_type = stored[vi.name]


def _convert_initializers(graph: GraphProto, wants: dict[str, set[int]], stored: dict[str, int]) -> None:
    for init in graph.initializer:
        if init.data_type != FP32:
            continue
        stored[init.name] = _shared_precision(wants[init.name])
        if stored[init.name] == FP16:
            init.CopyFrom(_fp16_tensor(init))


def _shared_precision(wanted: set[int]) -> int:
    """The precision to store a constant in: float16 only if every consumer reads it in float16."""
    return FP16 if wanted == {FP16} else FP32


def _fp16_tensor(tensor: TensorProto) -> TensorProto:
    """`tensor` in float16: finite values clamped to the float16 range, +-inf and NaN kept as they are."""
    array = numpy_helper.to_array(tensor)
    finite = np.isfinite(array)
    clamped = int(np.count_nonzero(finite & (np.abs(array) > FP16_MAX)))
    if clamped:
        log.warning("fp16: %d value(s) of %r clamped to the float16 range +-%g", clamped, tensor.name, FP16_MAX)
    array = np.where(finite, np.clip(array, -FP16_MAX, FP16_MAX), array).astype(np.float16)
    return numpy_helper.from_array(array, tensor.name)


def _cast(name: str, to: int, casts: dict[tuple[str, int], str], nodes: list[NodeProto], names: _Names) -> str:
    """The name of `name` cast to `to`, adding the Cast to `nodes` the first time it is asked for in this scope."""
    if (name, to) not in casts:
        output = names.fresh(f"{name}__{'fp16' if to == FP16 else 'fp32'}")
        nodes.append(helper.make_node("Cast", [name], [output], name=names.fresh(f"{output}__cast"), to=to))
        casts[(name, to)] = output
    return casts[(name, to)]


def _retype_attributes(node: NodeProto, stored: dict[str, int]) -> None:
    """Make the attributes that fix a node's output dtype agree with the precision chosen for that output."""
    precision = stored.get(node.output[0]) if node.output else None
    if precision is None:
        return
    if node.op_type == "Cast":
        _attr(node, "to").i = precision
    elif node.op_type == "EyeLike":
        _set_attribute(node, helper.make_attribute("dtype", precision))
    elif node.op_type in ("Constant", "ConstantOfShape") and precision == FP16:
        _retype_constant(node)


def _retype_constant(node: NodeProto) -> None:
    value = _attr(node, "value")
    if node.op_type == "ConstantOfShape" and value is None:  # the fill value defaults to a float32 zero
        value = helper.make_attribute("value", numpy_helper.from_array(np.zeros(1, np.float32)))
    elif value is None:  # value_float / value_floats
        floats = next((a for a in node.attribute if a.name in ("value_float", "value_floats")), None)
        if floats is None:
            raise ValueError(f"fp16: node {_describe(node)} holds a sparse float tensor, which is not supported")
        array = np.asarray(helper.get_attribute_value(floats), np.float32)
        value = helper.make_attribute("value", numpy_helper.from_array(array))
        node.attribute.remove(floats)
    value.t.CopyFrom(_fp16_tensor(value.t))
    _set_attribute(node, value)


def _set_attribute(node: NodeProto, attribute: AttributeProto) -> None:
    old = _attr(node, attribute.name)
    if old is not None:
        node.attribute.remove(old)
    node.attribute.append(attribute)


def _convert_outputs(
    graph: GraphProto,
    rules: _Rules,
    names: _Names,
    stored: dict[str, int],
    casts: dict[tuple[str, int], str],
    output_precisions: list[int],
    top: bool,
) -> None:
    """Cast each float output to the precision its consumer expects. A branch output may simply point at the Cast; a
    model output keeps its name, so the value behind it is renamed and the Cast takes the name."""
    for vi, want in zip(graph.output, output_precisions, strict=True):
        if not rules.is_float(vi.name):
            continue
        if stored[vi.name] != want and not top:
            vi.name = _cast(vi.name, want, casts, graph.node, names)
        elif stored[vi.name] != want:
            inner = names.fresh(f"{vi.name}__{'fp16' if stored[vi.name] == FP16 else 'fp32'}")
            _rename(graph, vi.name, inner)
            stored[inner] = stored[vi.name]
            graph.node.append(helper.make_node("Cast", [inner], [vi.name], name=names.fresh(f"{inner}__cast"), to=want))
        if not top:
            vi.type.tensor_type.elem_type = want
        stored[vi.name] = want


def _rename(graph: GraphProto, old: str, new: str) -> None:
    """Rename value `old` everywhere in `graph` and its subgraphs except in the graph's outputs."""
    for sub in _graphs(graph):
        for vi in sub.output if sub is not graph else []:
            vi.name = new if vi.name == old else vi.name
        for node in sub.node:
            node.input[:] = [new if name == old else name for name in node.input]
            node.output[:] = [new if name == old else name for name in node.output]
    for entry in [*graph.initializer, *graph.value_info]:
        if entry.name == old:
            entry.name = new
