"""deploy.fp16: float32 -> float16 graph conversion, checked by the ONNX checker and run on onnxruntime's CPU."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from deploy.fp16 import DEFAULT_BLOCK_OPS, FP16_MAX, convert_to_fp16

ort = pytest.importorskip("onnxruntime")

FLOAT, FLOAT16 = TensorProto.FLOAT, TensorProto.FLOAT16


class _Small(nn.Module):
    """Conv, GRU, MatMul+Add, Relu, Softmax and an int64 input cast to float: the stack's kinds of ops, without If."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.gru = nn.GRU(4, 8, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, image: torch.Tensor, steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = torch.relu(self.conv(image))  # (B, 4, 8, 8)
        out, _ = self.gru(feat.flatten(2).transpose(1, 2))  # (B, 64, 8)
        logits = self.head(out[:, -1]) + 0.01 * steps.float()[:, None]  # (B, 3)
        return torch.softmax(logits, -1), logits


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> onnx.ModelProto:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fp16") / "small.onnx"
    example = (torch.randn(2, 2, 8, 8), torch.tensor([3, 7]))
    axes = {"image": {0: "batch"}, "steps": {0: "batch"}, "probs": {0: "batch"}, "logits": {0: "batch"}}
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer warnings
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Small().eval(),
            example,
            str(path),
            input_names=["image", "steps"],
            output_names=["probs", "logits"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    return onnx.load(path)


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level, options.intra_op_num_threads = 3, 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def _io(model: onnx.ModelProto) -> list[tuple[str, int]]:
    return [(v.name, v.type.tensor_type.elem_type) for v in [*model.graph.input, *model.graph.output]]


def _types(model: onnx.ModelProto) -> dict[str, int]:
    graph = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
    return types | {init.name: init.data_type for init in graph.initializer}


def _feed(batch: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"image": rng.standard_normal((batch, 2, 8, 8), dtype=np.float32), "steps": np.arange(batch, dtype=np.int64)}


@pytest.mark.parametrize("block_ops", [DEFAULT_BLOCK_OPS, ()])
def test_converted_graph_checks_keeps_io_and_matches_fp32(small: onnx.ModelProto, block_ops: tuple[str, ...]) -> None:
    converted = convert_to_fp16(small, block_ops=block_ops)
    onnx.checker.check_model(converted, full_check=True)
    assert _io(converted) == _io(small)
    probs, logits = _run(converted, _feed())
    want_probs, want_logits = _run(small, _feed())
    assert probs.dtype == np.float32 and logits.dtype == np.float32
    np.testing.assert_allclose(logits, want_logits, atol=1e-2, rtol=1e-2)  # float16 keeps ~3 significant digits
    np.testing.assert_allclose(probs, want_probs, atol=5e-3)


def test_arithmetic_runs_in_fp16_and_blocked_ops_in_fp32(small: onnx.ModelProto) -> None:
    converted = convert_to_fp16(small)
    types = _types(converted)
    assert {init.data_type for init in converted.graph.initializer} == {FLOAT16}
    nodes = {node.op_type: node for node in converted.graph.node}
    assert types[nodes["Conv"].output[0]] == FLOAT16
    assert types[nodes["GRU"].output[0]] == FLOAT16
    assert types[nodes["Softmax"].input[0]] == FLOAT  # blocked by default: a Cast feeds it float32
    steps_cast = next(n for n in converted.graph.node if n.op_type == "Cast" and n.input[0] == "steps")
    assert helper.get_attribute_value(steps_cast.attribute[0]) == FLOAT16


def test_blocking_conv_keeps_its_weights_and_output_fp32(small: onnx.ModelProto) -> None:
    converted = convert_to_fp16(small, block_ops=("Conv",))
    onnx.checker.check_model(converted, full_check=True)
    types = _types(converted)
    conv = next(n for n in converted.graph.node if n.op_type == "Conv")
    assert [types[name] for name in conv.input] == [FLOAT, FLOAT, FLOAT]
    assert types[conv.output[0]] == FLOAT


def test_without_keep_io_types_inputs_and_outputs_become_fp16(small: onnx.ModelProto) -> None:
    converted = convert_to_fp16(small, keep_io_types=False)
    onnx.checker.check_model(converted, full_check=True)
    assert dict(_io(converted)) == {"image": FLOAT16, "steps": TensorProto.INT64, "probs": FLOAT16, "logits": FLOAT16}


def test_input_model_is_left_unchanged(small: onnx.ModelProto) -> None:
    before = small.SerializeToString()
    convert_to_fp16(small)
    assert small.SerializeToString() == before


def _model(nodes: list, inputs: list, outputs: list, initializers: list = ()) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    # IR version 8 (onnx 1.13): make_model's default follows the installed onnx, which can be newer
    # than the installed onnxruntime reads.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _value(name: str, dtype: int = FLOAT, shape: tuple = (4,)) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, shape)


def test_constants_are_clamped_to_the_fp16_range_keeping_inf() -> None:
    big = numpy_helper.from_array(np.array([1e6, -1e6, np.inf, 1.5], np.float32), "big")
    model = _model([helper.make_node("Add", ["x", "big"], ["y"])], [_value("x")], [_value("y")], [big])
    converted = convert_to_fp16(model)
    values = numpy_helper.to_array(converted.graph.initializer[0])
    assert values.dtype == np.float16
    assert values.tolist() == [FP16_MAX, -FP16_MAX, np.inf, 1.5]


def test_constant_read_in_both_precisions_stays_fp32() -> None:
    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.full(4, 0.1, np.float32))),
        helper.make_node("Exp", ["c"], ["e"]),  # blocked: reads float32
        helper.make_node("Mul", ["x", "c"], ["m"]),  # float16
        helper.make_node("Add", ["e", "m"], ["y"]),
    ]
    converted = convert_to_fp16(_model(nodes, [_value("x")], [_value("y")]))
    onnx.checker.check_model(converted, full_check=True)
    types = _types(converted)
    mul = next(n for n in converted.graph.node if n.op_type == "Mul")
    assert types["c"] == FLOAT and types[mul.input[1]] == FLOAT16
    (y,) = _run(converted, {"x": np.ones(4, np.float32)})
    np.testing.assert_allclose(y, np.exp(0.1) + 0.1, rtol=1e-3)


def test_inputs_whose_schema_has_no_fp16_stay_fp32() -> None:
    """Range has no float16 in its schema, so it keeps float32 inputs and feeds the float16 Add through a Cast."""
    scalars = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in [("a", 0.0), ("b", 4.0), ("d", 1.0)]]
    nodes = [helper.make_node("Range", ["a", "b", "d"], ["r"]), helper.make_node("Add", ["x", "r"], ["y"])]
    converted = convert_to_fp16(_model(nodes, [_value("x")], [_value("y")], scalars))
    onnx.checker.check_model(converted, full_check=True)
    assert {init.data_type for init in converted.graph.initializer} == {FLOAT}
    (y,) = _run(converted, {"x": np.ones(4, np.float32)})
    np.testing.assert_allclose(y, [1, 2, 3, 4])


def _if_model() -> onnx.ModelProto:
    """z = relu(cond ? x * 2 : x + 0.5), each branch reading x from the outer scope and holding its own constant."""
    two = helper.make_node("Constant", [], ["two"], value=numpy_helper.from_array(np.full(4, 2.0, np.float32)))
    then = helper.make_graph([two, helper.make_node("Mul", ["x", "two"], ["t"])], "then", [], [_value("t")])
    half = numpy_helper.from_array(np.full(4, 0.5, np.float32), "half")
    other = helper.make_graph([helper.make_node("Add", ["x", "half"], ["e"])], "else", [], [_value("e")], [half])
    nodes = [
        helper.make_node("If", ["cond"], ["branch"], name="choose", then_branch=then, else_branch=other),
        helper.make_node("Relu", ["branch"], ["z"]),
    ]
    return _model(nodes, [_value("cond", TensorProto.BOOL, ()), _value("x")], [_value("z")])


@pytest.mark.parametrize("cond", [True, False])
def test_if_branches_are_converted(cond: bool) -> None:
    model = _if_model()
    converted = convert_to_fp16(model)
    onnx.checker.check_model(converted, full_check=True)
    branch = next(a.g for a in converted.graph.node[0].attribute if a.name == "then_branch")
    assert branch.output[0].type.tensor_type.elem_type == FLOAT16
    feed = {"cond": np.array(cond), "x": np.array([-1.0, 0.25, 1.0, 3.0], np.float32)}
    np.testing.assert_allclose(_run(converted, feed)[0], _run(model, feed)[0], rtol=1e-3)


def test_loop_subgraphs_are_refused_naming_the_node() -> None:
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Identity", ["x"], ["v"])],
        "body",
        [_value("i", TensorProto.INT64, ()), _value("c_in", TensorProto.BOOL, ())],
        [_value("c_out", TensorProto.BOOL, ()), _value("v")],
    )
    loop = helper.make_node("Loop", ["n", ""], ["out"], name="repeat", body=body)
    model = _model([loop], [_value("n", TensorProto.INT64, ()), _value("x")], [_value("out", FLOAT, (None, 4))])
    with pytest.raises(ValueError, match=r"'repeat' \(Loop\)"):
        convert_to_fp16(model)
