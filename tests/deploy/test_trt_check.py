"""The static TensorRT check: each rule on a crafted graph that breaks it, clean graphs (hand-built and torch-exported)
that break none, and the error type that lists the errors."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from deploy.trt_check import (
    Finding,
    TrtCompatibilityError,
    check_graph,
    errors,
    format_findings,
    raise_for_errors,
)

FLOAT, DOUBLE, INT64 = TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.INT64


def value(name: str, shape: list, dtype: int = FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def weight(name: str, shape: list, dtype: int = FLOAT) -> TensorProto:
    return numpy_helper.from_array(np.zeros(shape, dtype=helper.tensor_dtype_to_np_dtype(dtype)), name)


def const(name: str, values: list) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(values, np.int64)))


def model(nodes, inputs, outputs, initializers=(), opset: int = 17, functions=()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], functions=list(functions))


def unary(op: str, **attrs) -> onnx.ModelProto:
    """`op` on one float input of shape [2, 3] (a fixed shape, so no profile finding joins in)."""
    return model(
        [helper.make_node(op, ["x"], ["y"], name=op.lower(), **attrs)], [value("x", [2, 3])], [value("y", None)]
    )


def recurrent(op: str, gates: int, **attrs) -> onnx.ModelProto:
    """An `op` (LSTM 4 gates, GRU 3, RNN 1) of hidden size 4 on a [seq 5, batch 2, input 3] sequence."""
    directions = 2 if attrs.get("direction") == "bidirectional" else 1
    node = helper.make_node(op, ["x", "w", "r"], ["y"], name="rnn", hidden_size=4, **attrs)
    weights = [weight("w", [directions, gates * 4, 3]), weight("r", [directions, gates * 4, 4])]
    return model([node], [value("x", [5, 2, 3])], [value("y", None)], weights)


def branch(name: str, output: str, shape: list) -> onnx.GraphProto:
    node = helper.make_node("Identity", [f"{name}_in"], [output], name=f"{name}_id")
    return helper.make_graph([node], name, [], [value(output, shape)])


def if_model(then_branch: onnx.GraphProto, else_branch: onnx.GraphProto) -> onnx.ModelProto:
    node = helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then_branch, else_branch=else_branch)
    outer = [value("then_in", [3]), value("else_in", [3]), value("cond", [], TensorProto.BOOL)]
    return model([node], outer, [value("y", None)])


def two_output_branch() -> onnx.GraphProto:
    nodes = [helper.make_node("Identity", ["then_in"], [name]) for name in ("a", "b")]
    return helper.make_graph(nodes, "then", [], [value("a", [3]), value("b", [3])])


def nested_multinomial() -> onnx.ModelProto:
    sample = helper.make_node("Multinomial", ["then_in"], ["picked"], name="sample", sample_size=1)
    cast = helper.make_node("Cast", ["picked"], ["then_out"], name="to_float", to=FLOAT)
    then_branch = helper.make_graph([sample, cast], "then", [], [value("then_out", [2, 1])])
    node = helper.make_node(
        "If", ["cond"], ["y"], name="if", then_branch=then_branch, else_branch=branch("else", "else_out", [2, 1])
    )
    inputs = [value("then_in", [2, 3]), value("else_in", [2, 1]), value("cond", [], TensorProto.BOOL)]
    return model([node], inputs, [value("y", None)])


def topk(k_values: list | None, **attrs) -> onnx.ModelProto:
    """TopK on [2, 5000] with a constant K, or with K from a graph input when `k_values` is None."""
    nodes = [helper.make_node("TopK", ["x", "k"], ["values", "indices"], name="topk", **attrs)]
    inputs = [value("x", [2, 5000])]
    if k_values is None:
        inputs.append(value("k", [1], INT64))
    else:
        nodes.insert(0, const("k", k_values))
    return model(nodes, inputs, [value("values", None), value("indices", None)])


def resize(**attrs) -> onnx.ModelProto:
    scales = helper.make_node("Constant", [], ["scales"], value=numpy_helper.from_array(np.full(4, 2.0, np.float32)))
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="resize", **attrs)
    return model([scales, node], [value("x", [1, 2, 4, 4])], [value("y", None)])


def computed_axes(op: str) -> onnx.ModelProto:
    """`op` whose axes come from a Shape computation rather than a constant."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], start=0, end=1),
        helper.make_node("Sub", ["shape", "one"], ["axes"]),
        helper.make_node(op, ["x", "axes"], ["y"], name=op.lower()),
    ]
    return model(
        nodes, [value("x", [1, 3])], [value("y", None)], [numpy_helper.from_array(np.ones(1, np.int64), "one")]
    )


def max_pool(outputs: list[str], **attrs) -> onnx.ModelProto:
    node = helper.make_node("MaxPool", ["x"], outputs, name="pool", kernel_shape=[2, 2], **attrs)
    return model([node], [value("x", [1, 2, 8, 8])], [value(o, None) for o in outputs])


def dropout_with_training_input() -> onnx.ModelProto:
    node = helper.make_node("Dropout", ["x", "", "training"], ["y"], name="dropout")
    return model([node], [value("x", [2, 3]), value("training", [], TensorProto.BOOL)], [value("y", None)])


def double_weight() -> onnx.ModelProto:
    nodes = [helper.make_node("Cast", ["w"], ["w32"], to=FLOAT), helper.make_node("Add", ["x", "w32"], ["y"])]
    return model(nodes, [value("x", [3])], [value("y", None)], [weight("w", [3], DOUBLE)])


def custom_domain_op() -> onnx.ModelProto:
    node = helper.make_node("FusedGelu", ["x"], ["y"], name="gelu", domain="com.example")
    m = model([node], [value("x", [2, 3])], [value("y", None)])
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    return m


BAD_GRAPHS = [
    pytest.param(
        unary("Multinomial", sample_size=1), "error", "unsupported-op", "multinomial (Multinomial)", id="multinomial"
    ),
    pytest.param(unary("Unique"), "error", "unsupported-op", "(Unique)", id="unique"),
    pytest.param(custom_domain_op(), "error", "unsupported-op", "(FusedGelu)", id="custom-domain"),
    pytest.param(nested_multinomial(), "error", "unsupported-op", "if.then_branch/sample (Multinomial)", id="nested"),
    pytest.param(recurrent("LSTM", 4, layout=1), "error", "lstm-attributes", "rnn (LSTM)", id="lstm-layout"),
    pytest.param(
        recurrent("LSTM", 4, input_forget=1), "error", "lstm-attributes", "rnn (LSTM)", id="lstm-input-forget"
    ),
    pytest.param(recurrent("GRU", 3, layout=1), "error", "rnn-layout", "rnn (GRU)", id="gru-layout"),
    pytest.param(recurrent("RNN", 1, layout=1), "error", "rnn-layout", "rnn (RNN)", id="rnn-layout"),
    pytest.param(
        recurrent("GRU", 3, direction="bidirectional", activations=["Sigmoid", "Tanh", "Sigmoid", "Relu"]),
        "error",
        "rnn-activations",
        "rnn (GRU)",
        id="bidirectional-activations",
    ),
    pytest.param(
        if_model(branch("then", "then_out", [3]), branch("else", "else_out", [1, 3])),
        "error",
        "if-branch-rank",
        "if (If)",
        id="if-rank",
    ),
    pytest.param(
        if_model(two_output_branch(), branch("else", "else_out", [3])),
        "error",
        "if-branch-rank",
        "if (If)",
        id="if-count",
    ),
    pytest.param(
        if_model(branch("then", "out", [3]), branch("else", "out", [3])),
        "error",
        "if-branch-names",
        "if (If)",
        id="if-names",
    ),
    pytest.param(
        model([helper.make_node("Relu", ["x"], ["y"])], [value("x", [2])], [value("y", None)], opset=7),
        "error",
        "opset-range",
        "model opset_import",
        id="opset-7",
    ),
    pytest.param(
        model([helper.make_node("Relu", ["x"], ["y"])], [value("x", [2])], [value("y", None)], opset=25),
        "error",
        "opset-range",
        "model opset_import",
        id="opset-25",
    ),
    pytest.param(
        model([helper.make_node("Cast", ["x"], ["y"], to=FLOAT)], [value("x", [2], DOUBLE)], [value("y", None)]),
        "error",
        "unsupported-dtype",
        "input 'x'",
        id="double-input",
    ),
    pytest.param(unary("Cast", to=TensorProto.UINT16), "error", "unsupported-dtype", "cast (Cast)", id="uint16-cast"),
    pytest.param(double_weight(), "warning", "double-downcast", "initializer 'w'", id="double-initializer"),
    pytest.param(unary("Cast", to=DOUBLE), "warning", "double-downcast", "cast (Cast)", id="double-cast"),
    pytest.param(resize(mode="cubic"), "warning", "resize-mode", "resize (Resize)", id="resize-cubic"),
    pytest.param(
        resize(coordinate_transformation_mode="tf_crop_and_resize"),
        "error",
        "resize-mode",
        "resize",
        id="resize-tf-crop",
    ),
    pytest.param(resize(antialias=1), "error", "resize-mode", "resize (Resize)", id="resize-antialias"),
    pytest.param(
        model(
            [helper.make_node("GridSample", ["x", "grid"], ["y"], name="sample")],
            [value("x", [1, 2, 4, 4, 4]), value("grid", [1, 3, 3, 3, 3])],
            [value("y", None)],
            opset=20,
        ),
        "error",
        "gridsample-rank",
        "sample (GridSample)",
        id="gridsample-5d",
    ),
    pytest.param(
        model(
            [helper.make_node("ScatterND", ["x", "i", "u"], ["y"], name="scatter", reduction="add")],
            [value("x", [4]), value("i", [1, 1], INT64), value("u", [1])],
            [value("y", None)],
        ),
        "error",
        "scatternd-reduction",
        "scatter (ScatterND)",
        id="scatternd-add",
    ),
    pytest.param(topk([2], sorted=0), "error", "topk-sorted", "topk (TopK)", id="topk-unsorted"),
    pytest.param(topk([4000]), "error", "topk-k", "topk (TopK)", id="topk-large-k"),
    pytest.param(topk(None), "warning", "topk-k", "topk (TopK)", id="topk-dynamic-k"),
    pytest.param(max_pool(["y"], dilations=[2, 2]), "error", "pool-dilations", "pool (MaxPool)", id="pool-dilations"),
    pytest.param(max_pool(["y", "indices"]), "error", "unsupported-output", "pool (MaxPool)", id="maxpool-indices"),
    pytest.param(
        model(
            [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn", training_mode=1)],
            [value("x", [2, 3, 4])],
            [value("y", None)],
            [weight(n, [3]) for n in "sbmv"],
        ),
        "error",
        "training-mode",
        "bn (BatchNormalization)",
        id="batchnorm-training",
    ),
    pytest.param(dropout_with_training_input(), "error", "training-mode", "dropout (Dropout)", id="dropout-training"),
    pytest.param(
        model([helper.make_node("Constant", [], ["y"], name="c", value_string="hi")], [], [value("y", None)]),
        "error",
        "constant-attr",
        "c (Constant)",
        id="string-constant",
    ),
    pytest.param(computed_axes("ReduceSum"), "error", "constant-input", "reducesum (ReduceSum)", id="reduce-axes"),
    pytest.param(computed_axes("Unsqueeze"), "warning", "constant-input", "unsqueeze (Unsqueeze)", id="unsqueeze-axes"),
    pytest.param(
        model([helper.make_node("RandomNormal", [], ["y"], name="noise", shape=[2], seed=3.0)], [], [value("y", None)]),
        "warning",
        "random-seed",
        "noise (RandomNormal)",
        id="random-seed",
    ),
]


@pytest.mark.parametrize(("graph", "severity", "rule", "where"), BAD_GRAPHS)
def test_a_graph_breaking_a_rule_gets_that_finding(graph, severity, rule, where):
    found = [f for f in check_graph(graph, profiles={}) if f.rule == rule]
    assert found, format_findings(check_graph(graph, profiles={}))
    assert {f.severity for f in found} == {severity}
    assert any(where in f.where for f in found), format_findings(found)
    assert all(f.message for f in found)


def dynamic_relu() -> onnx.ModelProto:
    return model([helper.make_node("Relu", ["x"], ["y"])], [value("x", ["batch", 3])], [value("y", ["batch", 3])])


def test_a_dynamic_input_is_a_warning_without_profiles_and_an_error_when_its_profile_is_missing():
    [warning] = check_graph(dynamic_relu())
    assert (warning.severity, warning.rule, warning.where) == ("warning", "dynamic-input-without-profile", "input 'x'")
    assert "[?, 3]" in warning.message
    [error] = check_graph(dynamic_relu(), profiles={})
    assert (error.severity, error.rule) == ("error", "dynamic-input-without-profile")
    assert check_graph(dynamic_relu(), profiles={"x": ((1, 3), (4, 3), (8, 3))}) == []


@pytest.mark.parametrize(
    ("profile", "fragment"),
    [
        (((4, 3), (2, 3), (8, 3)), "axis 0: profile needs 0 <= min <= opt <= max"),
        (((1, 3), (4, 3), (8, 5)), "axis 1 is fixed at 3"),
        (((1, 3), (4, 3), (8,)), "the input's rank 2"),
        (((1, 3), (4, 3)), "got 2 shapes"),
    ],
)
def test_a_profile_that_does_not_fit_the_input_is_an_error(profile, fragment):
    findings = check_graph(dynamic_relu(), profiles={"x": profile})
    assert [(f.severity, f.rule) for f in findings] == [("error", "profile-shape")]
    assert fragment in findings[0].message


def test_a_profile_for_an_input_the_graph_lacks_is_an_error():
    findings = check_graph(dynamic_relu(), profiles={"x": ((1, 3), (1, 3), (1, 3)), "frame": ((1,), (1,), (1,))})
    assert [(f.rule, f.where) for f in findings] == [("profile-unknown-input", "profile 'frame'")]


def test_an_input_without_a_shape_is_an_error():
    graph = model([helper.make_node("Relu", ["x"], ["y"])], [value("x", None)], [value("y", None)])
    assert [f.rule for f in errors(check_graph(graph, profiles={}))] == ["unknown-input-rank"]


def test_a_model_local_function_is_imported_and_its_body_checked():
    body = helper.make_node("Multinomial", ["a"], ["b"], name="inner", sample_size=1)
    function = helper.make_function("local", "Sampler", ["a"], ["b"], [body], [helper.make_opsetid("", 17)])
    node = helper.make_node("Sampler", ["x"], ["y"], name="outer", domain="local")
    graph = model([node], [value("x", [2, 3])], [value("y", None)], functions=[function])
    graph.opset_import.append(helper.make_opsetid("local", 1))
    assert [(f.rule, f.where) for f in check_graph(graph)] == [
        ("unsupported-op", "function Sampler/inner (Multinomial)")
    ]


def test_a_clean_graph_with_a_batch_profile_has_no_findings():
    """Conv + Relu on a dynamic batch of images and a GRU (layout 0) on a dynamic batch of sequences."""
    nodes = [
        helper.make_node("Conv", ["image", "conv_w"], ["feat"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["feat"], ["act"], name="relu"),
        helper.make_node("GRU", ["seq", "gru_w", "gru_r"], ["out", "last"], name="gru", hidden_size=4, layout=0),
    ]
    graph = model(
        nodes,
        [value("image", ["batch", 2, 8, 8]), value("seq", [7, "batch", 3])],
        [value("act", ["batch", 4, 8, 8]), value("last", [1, "batch", 4])],
        [weight("conv_w", [4, 2, 3, 3]), weight("gru_w", [1, 12, 3]), weight("gru_r", [1, 12, 4])],
    )
    profiles = {"image": ((1, 2, 8, 8), (4, 2, 8, 8), (16, 2, 8, 8)), "seq": ((7, 1, 3), (7, 4, 3), (7, 16, 3))}
    assert check_graph(graph, profiles=profiles) == []


class Mixed(nn.Module):
    """The ops the stack's graphs lean on: a convolution, grid sampling, a GRU, top-k and a few reductions."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.gru = nn.GRU(4, 8, batch_first=True)

    def forward(self, image, grid, seq):
        sampled = F.grid_sample(self.conv(image), grid, align_corners=False)  # (B, 4, 5, 5)
        out, _ = self.gru(seq)  # (B, T, 8)
        top, _ = torch.topk(out, 2, dim=-1)  # (B, T, 2)
        angle = torch.atan2(top[..., 0], top[..., 1])  # (B, T)
        return torch.erf(sampled).logsumexp(dim=1), torch.softmax(angle, dim=-1)


def test_a_torch_exported_graph_passes_with_a_batch_profile(tmp_path):
    torch.manual_seed(0)
    args = (torch.randn(2, 2, 6, 6), torch.rand(2, 5, 5, 2) * 2 - 1, torch.randn(2, 7, 4))
    names = ["image", "grid", "seq"]
    path = tmp_path / "mixed.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            Mixed().eval(), args, str(path), dynamo=False, opset_version=17, input_names=names,
            output_names=["pooled", "weights"],
            dynamic_axes={name: {0: "batch"} for name in [*names, "pooled", "weights"]},
        )  # fmt: skip
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert {"GRU", "Conv", "GridSample", "TopK", "Erf", "Atan", "ReduceLogSumExp", "Softmax"} <= ops
    profiles = {name: tuple((b, *a.shape[1:]) for b in (1, 4, 16)) for name, a in zip(names, args, strict=True)}
    findings = check_graph(path, profiles=profiles)
    assert errors(findings) == [], format_findings(findings)


def test_raise_for_errors_lists_the_errors_and_lets_warnings_pass():
    warning = Finding("warning", "topk-k", "topk (TopK)", "K is computed")
    error = Finding("error", "unsupported-op", "sample (Multinomial)", "not supported")
    raise_for_errors([warning])
    with pytest.raises(TrtCompatibilityError, match="1 TensorRT compatibility error") as caught:
        raise_for_errors([warning, error])
    assert caught.value.findings == (error,)
    assert "sample (Multinomial)" in str(caught.value) and "topk" not in str(caught.value)


def test_format_findings_is_a_table_with_errors_first():
    warning = Finding("warning", "topk-k", "topk (TopK)", "K is computed")
    error = Finding("error", "unsupported-op", "sample (Multinomial)", "not supported")
    header, first, second = format_findings([warning, error]).splitlines()
    assert header.split() == ["severity", "rule", "where", "message"]
    assert first.startswith("error") and second.startswith("warning")
    assert first.index("sample") == second.index("topk (TopK)") == header.index("where")
    assert format_findings([]) == "no TensorRT compatibility findings"


def test_a_finding_refuses_an_unknown_severity():
    with pytest.raises(ValueError, match="severity"):
        Finding("fatal", "unsupported-op", "x", "y")
