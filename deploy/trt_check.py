"""What TensorRT's ONNX parser would reject or handle poorly in a graph, found without TensorRT installed.

TensorRT only installs on machines with an NVIDIA GPU, so a graph exported on a
laptop or in CI would first meet the parser on the deployment target. This
module reads the ONNX graph (subgraphs of If/Loop/Scan and model-local functions
included) and reports each problem as a `Finding`: an error where the parser
refuses the graph or silently computes something else, a warning where it
builds but not as the graph says (a seed ignored, a dtype narrowed) or where the
restriction depends on values only known at build time.

Sources (TensorRT 10.x is the target; TensorRT 11 is noted where it differs):
    OPS   onnx/onnx-tensorrt docs/operators.md, the TensorRT 10.15 revision
          ("supports operators in the inclusive range of opset 9 to opset 24"),
          its "Supported" column and its "Restrictions" column.
    RNN   onnx/onnx-tensorrt onnxOpImporters.cpp (10.x): the GRU/LSTM/RNN importers
          read X as [seq, batch, input] and never read `layout`.
    DTYPE onnx/onnx-tensorrt importerUtils.cpp `convertDtype` (10.x): DOUBLE becomes
          FLOAT; STRING, INT16, UINT16, UINT32, UINT64 and complex types are refused.
          docs/Changelog.md (9.0 EA): INT64 is native since 9.0, so it is not flagged.
    TRT11 NVIDIA "ONNX Opset Guide" for TensorRT 11.x (opset 9 to 25) and the
          11.0 / 11.2.1 release notes (Swish and DFT added, GridSample on rank 5).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, numpy_helper

Severity = Literal["error", "warning"]
Shape = Sequence[int]
Profile = tuple[Shape, Shape, Shape]  # (min, opt, max): what IOptimizationProfile.setDimensions takes

# docs/operators.md (TensorRT 10.15). TensorRT 11.x raises the maximum to 25 (11.5 added opset 25).
OPSET_RANGE = (9, 24)

# docs/operators.md (TensorRT 10.15), rows marked Y. TensorRT 11.0 adds Swish.
SUPPORTED_OPS = frozenset({
    "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh", "Attention",
    "AveragePool", "BatchNormalization", "BlackmanWindow", "Cast", "CastLike", "Ceil", "Celu", "Clip", "Concat",
    "Constant", "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum", "DeformConv", "DepthToSpace",
    "DequantizeLinear", "Div", "Dropout", "Einsum", "Elu", "Equal", "Erf", "Exp", "Expand", "EyeLike", "Flatten",
    "Floor", "Gather", "GatherElements", "GatherND", "Gelu", "Gemm", "GlobalAveragePool", "GlobalLpPool",
    "GlobalMaxPool", "Greater", "GreaterOrEqual", "GridSample", "GroupNormalization", "GRU", "HammingWindow",
    "HannWindow", "HardSigmoid", "HardSwish", "Hardmax", "Identity", "If", "ImageScaler", "InstanceNormalization",
    "IsInf", "IsNaN", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual", "Log", "LogSoftmax", "Loop", "LRN",
    "LSTM", "LpNormalization", "LpPool", "MatMul", "Max", "MaxPool", "Mean", "MeanVarianceNormalization", "Min",
    "Mish", "Mod", "Mul", "Neg", "NonMaxSuppression", "NonZero", "Not", "OneHot", "Or", "Pad", "ParametricSoftplus",
    "Pow", "PRelu", "QuantizeLinear", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
    "Range", "Reciprocal", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
    "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare", "Relu", "Reshape", "Resize", "ReverseSequence",
    "RMSNormalization", "RNN", "RoiAlign", "RotaryEmbedding", "Round", "STFT", "ScaledTanh", "Scan", "Scatter",
    "ScatterElements", "ScatterND", "Selu", "Shape", "Shrink", "Sigmoid", "Sign", "Sin", "Sinh", "Size", "Slice",
    "Softmax", "Softplus", "Softsign", "SpaceToDepth", "Split", "Sqrt", "Squeeze", "Sub", "Sum", "Tan", "Tanh",
    "TensorScatter", "ThresholdedRelu", "Tile", "TopK", "Transpose", "Trilu", "Unsqueeze", "Upsample", "Where", "Xor",
})  # fmt: skip

# docs/operators.md (TensorRT 10.15), rows marked N. TensorRT 11.2.1 imports DFT through a cuFFT plugin.
UNSUPPORTED_OPS = frozenset({
    "AffineGrid", "Bernoulli", "BitShift", "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor", "Col2Im",
    "CenterCropPad", "Compress", "ConcatFromSequence", "ConvInteger", "DFT", "Det", "DynamicQuantizeLinear",
    "ImageDecoder", "MatMulInteger", "MaxRoiPool", "MaxUnpool", "MelWeightMatrix", "Multinomial",
    "NegativeLogLikelihoodLoss", "Optional", "OptionalGetElement", "OptionalHasElement", "QLinearConv", "QLinearMatMul",
    "RegexFullMatch", "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase", "SequenceInsert",
    "SequenceLength", "SequenceMap", "SoftmaxCrossEntropyLoss", "SplitToSequence", "StringConcat", "StringNormalizer",
    "StringSplit", "TfIdfVectorizer", "Unique",
})  # fmt: skip

# ONNX element types `convertDtype` maps onto a TensorRT type of its own. DOUBLE is mapped onto FLOAT, so it
# is handled apart: an error on a graph input or output (the engine binding is FP32), a warning elsewhere.
TRT_DTYPES = frozenset({"FLOAT", "FLOAT16", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT4E2M1", "INT4", "INT8", "UINT8",
                        "INT32", "INT64", "BOOL"})  # fmt: skip

# Restrictions column of docs/operators.md (TensorRT 10.15).
RESIZE_COORDINATE_MODES = frozenset({"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                                     "align_corners"})  # fmt: skip
RESIZE_NEAREST_MODES = frozenset({"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"})
TOPK_MAX_K = 3840  # "`K` input must be less than 3840"
RECURRENT_ACTIVATIONS = {"LSTM": 3, "GRU": 2, "RNN": 1}  # activations per direction, as the importers count them
REDUCE_OPS = frozenset(op for op in SUPPORTED_OPS if op.startswith("Reduce"))
POOL_OPS = frozenset({"AveragePool", "LpPool", "MaxPool"})


@dataclass(frozen=True)
class Finding:
    """One problem: how bad, which rule, where in the graph, and what was found against what TensorRT expects."""

    severity: Severity
    rule: str
    where: str
    message: str

    def __post_init__(self) -> None:
        if self.severity not in ("error", "warning"):
            raise ValueError(f"Finding severity must be 'error' or 'warning', got {self.severity!r}")


class TrtCompatibilityError(ValueError):
    """A graph TensorRT would refuse, with the error findings that say why."""

    def __init__(self, findings: Sequence[Finding]) -> None:
        self.findings = tuple(findings)
        super().__init__(f"{len(self.findings)} TensorRT compatibility error(s):\n{format_findings(self.findings)}")


Issue = tuple[Severity, str, str]  # (severity, rule, message): a node rule's answer before it knows `where`


@dataclass(frozen=True)
class _Index:
    """What node rules look up across the whole model: declared tensor types and the constant tensors."""

    types: Mapping[str, onnx.TypeProto]
    constants: Mapping[str, Any]  # initializer TensorProto, or a Constant node's attribute value

    def rank(self, name: str) -> int | None:
        tensor_type = self.types[name].tensor_type if name in self.types else None
        return len(tensor_type.shape.dim) if tensor_type is not None and tensor_type.HasField("shape") else None

    def is_constant(self, name: str) -> bool:
        return name in self.constants

    def value(self, name: str) -> np.ndarray | None:
        """The constant's values, or None when it is not a constant or its data lives outside the file."""
        value = self.constants.get(name)
        if isinstance(value, TensorProto):
            return None if value.data_location == TensorProto.EXTERNAL else numpy_helper.to_array(value)
        return None if value is None else np.asarray(value)


def check_graph(model_or_path: ModelProto | str | Path, profiles: Mapping[str, Profile] | None = None) -> list[Finding]:
    """Every finding for the graph, errors and warnings: model-level ones first, then nodes in graph order.

    `profiles` maps a graph input's name to its (min, opt, max) shapes, one optimisation profile as
    trtexec's --minShapes/--optShapes/--maxShapes take it. TensorRT cannot build an engine for a graph
    with a dynamic input dimension without a profile covering it, so with `profiles` given a dynamic
    input missing from it is an error; with `profiles=None` (profiles not decided yet) it is a warning.
    """
    model = (
        model_or_path if isinstance(model_or_path, ModelProto) else onnx.load(model_or_path, load_external_data=False)
    )
    model = onnx.shape_inference.infer_shapes(model)  # ranks of intermediate tensors, for If and GridSample
    index = _index(model)
    local_functions = {(f.domain, f.name) for f in model.functions}
    findings = [*_check_opset(model), *_check_inputs(model.graph, profiles), *_check_bindings(model.graph),
                *_check_weights(model)]  # fmt: skip
    for path, nodes in _node_lists(model):
        for node in nodes:
            where = f"{path}{node.name or '<unnamed>'} ({node.op_type})"
            issues = _check_node(node, index, local_functions)
            findings.extend(Finding(severity, rule, where, message) for severity, rule, message in issues)
    return findings


def errors(findings: Sequence[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def raise_for_errors(findings: Sequence[Finding]) -> None:
    """Raise `TrtCompatibilityError` listing the errors; warnings alone pass."""
    if errors(findings):
        raise TrtCompatibilityError(errors(findings))


def format_findings(findings: Sequence[Finding]) -> str:
    """A fixed-width table, errors first, one finding per line: what a log or an exception message shows."""
    if not findings:
        return "no TensorRT compatibility findings"
    ordered = sorted(findings, key=lambda f: f.severity != "error")
    rows = [("severity", "rule", "where", "message"), *((f.severity, f.rule, f.where, f.message) for f in ordered)]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3]]) for row in rows
    )


# --- walking the model ------------------------------------------------------------------------------------------


def _subgraphs(node: NodeProto) -> Iterator[tuple[str, GraphProto]]:
    for attr in node.attribute:
        if attr.type == AttributeProto.GRAPH:
            yield attr.name, attr.g
        elif attr.type == AttributeProto.GRAPHS:
            yield from ((f"{attr.name}[{i}]", g) for i, g in enumerate(attr.graphs))


def _graph_node_lists(graph: GraphProto, path: str) -> Iterator[tuple[str, Sequence[NodeProto]]]:
    yield path, graph.node
    for node in graph.node:
        for attr_name, subgraph in _subgraphs(node):
            yield from _graph_node_lists(subgraph, f"{path}{node.name or node.op_type}.{attr_name}/")


def _node_lists(model: ModelProto) -> Iterator[tuple[str, Sequence[NodeProto]]]:
    """(path, nodes) of the main graph, every nested subgraph and every model-local function body."""
    yield from _graph_node_lists(model.graph, "")
    for function in model.functions:
        yield f"function {function.name}/", function.node


def _graphs(graph: GraphProto) -> Iterator[GraphProto]:
    yield graph
    for node in graph.node:
        for _, subgraph in _subgraphs(node):
            yield from _graphs(subgraph)


def _index(model: ModelProto) -> _Index:
    types: dict[str, onnx.TypeProto] = {}
    constants: dict[str, Any] = {}
    for graph in _graphs(model.graph):
        types.update((v.name, v.type) for v in [*graph.input, *graph.output, *graph.value_info])
        constants.update((t.name, t) for t in graph.initializer)
    for _, nodes in _node_lists(model):
        constants.update((n.output[0], onnx.helper.get_attribute_value(n.attribute[0]))
                         for n in nodes if n.op_type == "Constant" and n.attribute)  # fmt: skip
    return _Index(types, constants)


def _attr(node: NodeProto, name: str, default: Any = None) -> Any:
    """An attribute's value with strings decoded, or `default` when the node does not set it."""
    for attr in node.attribute:
        if attr.name == name:
            return _decoded(onnx.helper.get_attribute_value(attr))
    return default


def _decoded(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    return [_decoded(v) for v in value] if isinstance(value, list) else value


def _input(node: NodeProto, i: int) -> str:
    """Input `i`'s name, or "" when it is absent (ONNX marks a skipped optional input with an empty name)."""
    return node.input[i] if len(node.input) > i else ""


# --- graph-level rules ------------------------------------------------------------------------------------------


def _check_opset(model: ModelProto) -> Iterator[Finding]:
    """Outside the documented range the parser may warn and try, but no importer is promised to handle the graph."""
    low, high = OPSET_RANGE
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx") and not low <= opset.version <= high:
            yield Finding("error", "opset-range", "model opset_import",
                          f"default-domain opset {opset.version}; the TensorRT 10 parser supports opsets {low} to "
                          f"{high} (TensorRT 11: {low} to 25): re-export with an opset in that range")  # fmt: skip


def _dims(value: onnx.ValueInfoProto) -> list[int | None] | None:
    """Each dimension's fixed size, None where dynamic (a dim_param or unknown); None for an unknown rank."""
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]


def _check_inputs(graph: GraphProto, profiles: Mapping[str, Profile] | None) -> Iterator[Finding]:
    initializers = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    for name in sorted(set(profiles or {}) - {v.name for v in inputs}):
        yield Finding(
            "error",
            "profile-unknown-input",
            f"profile {name!r}",
            f"a profile names {name!r}, which is not a graph input; inputs are {[v.name for v in inputs]}",
        )
    for value in inputs:
        where, dims = f"input {value.name!r}", _dims(value)
        if dims is None:
            yield Finding(
                "error",
                "unknown-input-rank",
                where,
                "the input has no shape; TensorRT needs every network input's rank at parse time",
            )
        elif profiles is not None and value.name in profiles:
            yield from (
                Finding("error", "profile-shape", where, m) for m in _profile_problems(dims, profiles[value.name])
            )
        elif None in dims:
            yield _missing_profile(where, dims, given=profiles is not None)


def _missing_profile(where: str, dims: list[int | None], given: bool) -> Finding:
    shape = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
    message = f"dynamic shape {shape}: TensorRT needs an optimisation profile (min, opt, max) for this input"
    return Finding(
        "error" if given else "warning",
        "dynamic-input-without-profile",
        where,
        message + ("" if given else "; none were given, so this is checked at engine build"),
    )


def _profile_problems(dims: list[int | None], profile: Profile) -> Iterator[str]:
    """How a (min, opt, max) profile fails the graph's shape: ranks, ordering, and the graph's fixed sizes."""
    if len(profile) != 3:
        yield f"a profile is (min, opt, max) shapes; got {len(profile)} shapes"
        return
    if any(len(shape) != len(dims) for shape in profile):
        yield f"profile shapes {[list(s) for s in profile]} do not all have the input's rank {len(dims)}"
        return
    for axis, (size, low, opt, high) in enumerate(zip(dims, *profile, strict=True)):
        if not 0 <= low <= opt <= high:
            yield f"axis {axis}: profile needs 0 <= min <= opt <= max, got min={low} opt={opt} max={high}"
        elif size is not None and not low == opt == high == size:
            yield f"axis {axis} is fixed at {size} in the graph, but the profile gives min={low} opt={opt} max={high}"


def _dtype_issues(elem_type: int, what: str, double_severity: Severity) -> Iterator[Issue]:
    """A type TensorRT refuses is an error; DOUBLE, narrowed to FLOAT, is one only where it changes a binding."""
    name = TensorProto.DataType.Name(elem_type)
    if name == "DOUBLE" and double_severity == "error":
        yield "error", "unsupported-dtype", f"{what} is DOUBLE; TensorRT has no FP64 and binds it as FLOAT instead"
    elif name == "DOUBLE":
        yield (
            "warning",
            "double-downcast",
            f"{what} is DOUBLE; TensorRT has no FP64 and narrows it to FLOAT (+-FLT_MAX)",
        )
    elif elem_type != TensorProto.UNDEFINED and name not in TRT_DTYPES:
        yield "error", "unsupported-dtype", f"{what} is {name}; TensorRT takes {sorted(TRT_DTYPES)} (and DOUBLE)"


def _check_bindings(graph: GraphProto) -> Iterator[Finding]:
    """Graph inputs and outputs become engine bindings, so even a narrowed type changes the I/O contract."""
    initializers = {t.name for t in graph.initializer}
    for kind, values in (("input", graph.input), ("output", graph.output)):
        for value in (v for v in values if v.name not in initializers):
            issues = _dtype_issues(value.type.tensor_type.elem_type, f"this {kind}", "error")
            yield from (Finding(*issue[:2], f"{kind} {value.name!r}", issue[2]) for issue in issues)


def _check_weights(model: ModelProto) -> Iterator[Finding]:
    for graph in _graphs(model.graph):
        for tensor in graph.initializer:
            issues = _dtype_issues(tensor.data_type, "this initializer", "warning")
            yield from (Finding(*issue[:2], f"initializer {tensor.name!r}", issue[2]) for issue in issues)


# --- node rules -------------------------------------------------------------------------------------------------


def _check_node(node: NodeProto, index: _Index, local_functions: set[tuple[str, str]]) -> Iterator[Issue]:
    if (node.domain, node.op_type) in local_functions:
        return  # the parser imports a model-local function's body, whose nodes are checked where they stand
    if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
        yield "error", "unsupported-op", _unsupported_message(node)
        return
    rule = NODE_RULES.get(node.op_type)
    if rule is not None:
        yield from rule(node, index)


def _unsupported_message(node: NodeProto) -> str:
    plugin = f"the parser has no importer for it and would look for a TensorRT plugin named {node.op_type!r}"
    if node.domain not in ("", "ai.onnx"):
        return f"operator of domain {node.domain!r}: {plugin}"
    if node.op_type in UNSUPPORTED_OPS:
        return f"operators.md lists {node.op_type} as not supported: {plugin}"
    return f"{node.op_type} is not in operators.md's supported list: {plugin}"


def _lstm(node: NodeProto, index: _Index) -> Iterator[Issue]:
    for name in ("input_forget", "layout"):
        if _attr(node, name, 0) != 0:
            yield "error", "lstm-attributes", f"{name}={_attr(node, name)}; TensorRT's LSTM requires {name}=0"
    yield from _recurrent(node, index)


def _recurrent(node: NodeProto, index: _Index) -> Iterator[Issue]:
    if node.op_type != "LSTM" and _attr(node, "layout", 0) != 0:  # LSTM's layout is reported as lstm-attributes
        yield (
            "error",
            "rnn-layout",
            f"layout={_attr(node, 'layout')}; the {node.op_type} importer ignores layout and "
            "reads X as [seq, batch, input] (layout=0), so a batch-first graph would compute something else",
        )
    per_direction = RECURRENT_ACTIVATIONS[node.op_type]
    if _attr(node, "direction", "forward") == "bidirectional":
        for name in ("activations", "activation_alpha", "activation_beta"):
            values = list(_attr(node, name, []))
            if len(values) == 2 * per_direction and values[:per_direction] != values[per_direction:]:
                yield (
                    "error",
                    "rnn-activations",
                    f"bidirectional {name} differ between directions ({values}); "
                    "TensorRT requires the reverse pass to use the forward pass's",
                )


def _if(node: NodeProto, index: _Index) -> Iterator[Issue]:
    then_graph, else_graph = _attr(node, "then_branch"), _attr(node, "else_branch")
    if len(then_graph.output) != len(else_graph.output):
        yield (
            "error",
            "if-branch-rank",
            f"then_branch has {len(then_graph.output)} outputs, else_branch "
            f"{len(else_graph.output)}; TensorRT requires the same outputs, of the same rank",
        )
        return
    for i, (then_out, else_out) in enumerate(zip(then_graph.output, else_graph.output, strict=True)):
        ranks = [_branch_rank(out, index) for out in (then_out, else_out)]
        if None not in ranks and ranks[0] != ranks[1]:
            yield (
                "error",
                "if-branch-rank",
                f"output {i} has rank {ranks[0]} in then_branch and {ranks[1]} in "
                "else_branch; TensorRT requires both branches' outputs to have the same rank",
            )
        if then_out.name == else_out.name:
            yield (
                "error",
                "if-branch-names",
                f"output {i} is named {then_out.name!r} in both branches; TensorRT "
                "requires the two branches' outputs to have different names",
            )


def _branch_rank(output: onnx.ValueInfoProto, index: _Index) -> int | None:
    own = _dims(output)
    return len(own) if own is not None else index.rank(output.name)


def _resize(node: NodeProto, index: _Index) -> Iterator[Issue]:
    mode = _attr(node, "mode", "nearest")
    coordinates = _attr(node, "coordinate_transformation_mode", "half_pixel")
    nearest = _attr(node, "nearest_mode", "round_prefer_floor")
    if mode == "cubic":
        yield "warning", "resize-mode", "mode='cubic'; operators.md lists only nearest and linear as supported"
    elif mode not in ("nearest", "linear", "bilinear"):  # "bilinear" is Upsample-7's name for linear
        yield "error", "resize-mode", f"mode={mode!r}; TensorRT supports nearest and linear"
    if coordinates not in RESIZE_COORDINATE_MODES:
        yield (
            "error",
            "resize-mode",
            f"coordinate_transformation_mode={coordinates!r}; TensorRT supports {sorted(RESIZE_COORDINATE_MODES)}",
        )
    if nearest not in RESIZE_NEAREST_MODES:
        yield "error", "resize-mode", f"nearest_mode={nearest!r}; TensorRT supports {sorted(RESIZE_NEAREST_MODES)}"
    elif coordinates == "tf_half_pixel_for_nn" and nearest != "round_prefer_floor":
        yield "error", "resize-mode", "tf_half_pixel_for_nn needs nearest_mode='round_prefer_floor' in TensorRT"
    if _attr(node, "antialias", 0) != 0:
        yield "error", "resize-mode", "antialias=1; TensorRT does not support antialiasing"
    if _attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
        yield (
            "error",
            "resize-mode",
            f"keep_aspect_ratio_policy={_attr(node, 'keep_aspect_ratio_policy')!r}; TensorRT supports 'stretch'",
        )


def _grid_sample(node: NodeProto, index: _Index) -> Iterator[Issue]:
    rank = index.rank(_input(node, 0))
    if rank is not None and rank != 4:
        yield (
            "error",
            "gridsample-rank",
            f"input X has rank {rank}; TensorRT 10 GridSample takes only 4D input (TensorRT 11.2.1 adds rank 5)",
        )


def _scatter_nd(node: NodeProto, index: _Index) -> Iterator[Issue]:
    if _attr(node, "reduction", "none") != "none":
        yield "error", "scatternd-reduction", f"reduction={_attr(node, 'reduction')!r}; TensorRT supports only 'none'"


def _topk(node: NodeProto, index: _Index) -> Iterator[Issue]:
    if _attr(node, "sorted", 1) != 1:
        yield "error", "topk-sorted", "sorted=0; TensorRT's TopK requires sorted=1"
    k_input = _input(node, 1)
    k = index.value(k_input) if k_input else np.asarray(_attr(node, "k", 0))  # before opset 10, K is an attribute
    if k is None:
        yield (
            "warning",
            "topk-k",
            f"K comes from the non-constant tensor {k_input!r}; TensorRT requires "
            f"K < {TOPK_MAX_K}, which can only be checked when the engine runs (TensorRT 8.5 and older refuse it)",
        )
    elif int(k.reshape(-1)[0]) >= TOPK_MAX_K:
        yield "error", "topk-k", f"K={int(k.reshape(-1)[0])}; TensorRT requires K < {TOPK_MAX_K}"


def _pool(node: NodeProto, index: _Index) -> Iterator[Issue]:
    dilations = list(_attr(node, "dilations", []))
    if any(d != 1 for d in dilations):
        yield "error", "pool-dilations", f"dilations={dilations}; TensorRT pooling requires dilations of 1"
    if node.op_type == "MaxPool":
        yield from _single_output(node, index)


def _single_output(node: NodeProto, index: _Index) -> Iterator[Issue]:
    extra = [name for name in node.output[1:] if name]
    if extra:
        yield (
            "error",
            "unsupported-output",
            f"outputs {extra} are used; TensorRT's {node.op_type} produces only "
            "its first output (the others are training or index outputs)",
        )


def _batch_norm(node: NodeProto, index: _Index) -> Iterator[Issue]:
    if _attr(node, "training_mode", 0) != 0:
        yield "error", "training-mode", "training_mode=1; TensorRT runs BatchNormalization in inference mode only"
    yield from _single_output(node, index)


def _dropout(node: NodeProto, index: _Index) -> Iterator[Issue]:
    training = _input(node, 2)
    value = index.value(training) if training else None
    if training and (value is None or bool(value.reshape(-1)[0])):
        yield (
            "error",
            "training-mode",
            f"training_mode input {training!r} is not a constant False; TensorRT "
            "requires it to be an initializer that evaluates to False",
        )


def _constant(node: NodeProto, index: _Index) -> Iterator[Issue]:
    refused = [a.name for a in node.attribute if a.name in ("sparse_value", "value_string", "value_strings")]
    if refused:
        yield "error", "constant-attr", f"attribute {refused[0]}; TensorRT does not support sparse or string constants"
    value = _attr(node, "value")
    if isinstance(value, TensorProto):
        yield from _dtype_issues(value.data_type, "this constant", "warning")


def _cast(node: NodeProto, index: _Index) -> Iterator[Issue]:
    yield from _dtype_issues(_attr(node, "to"), "the cast's target type", "warning")


def _constant_input(i: int, what: str, severity: Severity) -> Callable[[NodeProto, _Index], Iterator[Issue]]:
    """A rule for an input operators.md wants constant: an error for "initializer", a warning for "build-time"
    or "resolvable" constants, which the parser may still fold from static shapes."""

    def rule(node: NodeProto, index: _Index) -> Iterator[Issue]:
        name = _input(node, i)
        if name and not index.is_constant(name):
            yield (
                severity,
                "constant-input",
                f"{what} comes from the computed tensor {name!r}; "
                f"TensorRT requires it to be {'an initializer' if severity == 'error' else 'a build-time constant'}",
            )

    return rule


def _random(node: NodeProto, index: _Index) -> Iterator[Issue]:
    if _attr(node, "seed") is not None:
        yield (
            "warning",
            "random-seed",
            "seed is set; TensorRT ignores it, so the engine's samples differ from the graph's",
        )


NODE_RULES: dict[str, Callable[[NodeProto, _Index], Iterator[Issue]]] = {
    "LSTM": _lstm,
    "GRU": _recurrent,
    "RNN": _recurrent,
    "If": _if,
    "Resize": _resize,
    "Upsample": _resize,
    "GridSample": _grid_sample,
    "ScatterND": _scatter_nd,
    "TopK": _topk,
    **dict.fromkeys(POOL_OPS, _pool),
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _single_output,
    "Dropout": _dropout,
    "Constant": _constant,
    "Cast": _cast,
    **dict.fromkeys(REDUCE_OPS, _constant_input(1, "axes", "error")),
    "CumSum": _constant_input(1, "axis", "warning"),
    "OneHot": _constant_input(1, "depth", "warning"),
    "Squeeze": _constant_input(1, "axes", "warning"),
    "Unsqueeze": _constant_input(1, "axes", "warning"),
    **dict.fromkeys(("RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike"), _random),
}


def check_artifact(artifact: str | Path, max_batch: int = 64) -> dict[str, list[Finding]]:
    """Findings for every graph of an exported artifact under the optimisation profile the TensorRT
    backend would build (`deploy.backends.tensorrt_backend.profile_shapes`), restricted to the inputs
    each graph kept (the export drops inputs a graph never reads)."""
    from deploy.artifact import Artifact
    from deploy.backends.tensorrt_cache import ProfileSizes, profile_shapes

    art = Artifact.open(artifact)
    sizes = ProfileSizes(max_batch=max_batch)
    report = {}
    for name in art.graph_names:
        model = onnx.load(art.graph_path(name), load_external_data=False)
        kept = {value.name for value in model.graph.input}
        profiles = {k: v for k, v in profile_shapes(art.spec(name), sizes).items() if k in kept}
        report[name] = check_graph(model, profiles)
    return report
