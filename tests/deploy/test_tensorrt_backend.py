"""deploy.backends.tensorrt_backend: decisions run everywhere; building and running engines needs TensorRT and a GPU."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import types
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from core import io as core_io
from core.io import atomic_write_bytes
from deploy.artifact import Artifact
from deploy.backends import tensorrt_backend as trt_backend
from deploy.backends.tensorrt_backend import TensorRTRuntime, parse_failure, torch_dtypes
from deploy.backends.tensorrt_cache import (
    FP16_BUILDER_FLAG,
    FP16_STRONGLY_TYPED,
    FP32,
    CacheCorrupted,
    CacheHeader,
    ProfileSizes,
    cache_key,
    cached_engine,
    check_engine_io,
    check_profile,
    decode_cache,
    encode_cache,
    engine_path,
    fp16_recipe,
    profile_shapes,
)
from deploy.base import ArtifactError, BackendUnavailable
from deploy.runtime import open_runtime
from deploy.spec import GraphSpec, InputError, TensorSpec

try:
    import tensorrt  # noqa: F401

    HAS_TENSORRT = True
except (ImportError, OSError):
    HAS_TENSORRT = False

needs_tensorrt = pytest.mark.skipif(
    not HAS_TENSORRT, reason="TensorRT is not installed (its PyPI wheels download from an unreachable vendor host)"
)
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

SPEC = GraphSpec(
    "step",
    inputs=(
        TensorSpec("frame.bev", "float32", ("batch", 2, 32, 32)),
        TensorSpec("noise.position", "float32", ("batch", 4, "samples", 12, 2)),
        TensorSpec("state.tracker.steps", "int64", ("batch",)),
    ),
    outputs=(TensorSpec("plan.trajectory", "float32", ("batch", 12, 3)),),
)
HEADER = CacheHeader(trt_version="10.3.0", gpu="NVIDIA H100 80GB HBM3 (sm_90)", key="k" * 64, precision="fp16")


# --- Decisions --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "precision", "recipe"),
    [
        ("10.3.0", "fp16", FP16_BUILDER_FLAG),
        ("10.13.3.9", "fp16", FP16_BUILDER_FLAG),
        ("11.0.0", "fp16", FP16_STRONGLY_TYPED),
        ("12.1.0", "fp16", FP16_STRONGLY_TYPED),
        ("10.3.0", "fp32", FP32),
        ("11.0.0", "fp32", FP32),
    ],
)
def test_fp16_recipe_follows_the_tensorrt_major_version(version: str, precision: str, recipe: str) -> None:
    assert fp16_recipe(version, precision) == recipe


def test_fp16_recipe_refuses_tensorrt_before_10_and_unknown_precisions() -> None:
    with pytest.raises(BackendUnavailable, match="TensorRT 8.6.1 is too old"):
        fp16_recipe("8.6.1", "fp32")
    with pytest.raises(ValueError, match="precision 'int8'"):
        fp16_recipe("10.3.0", "int8")


def test_profile_covers_every_input_with_batch_and_samples_ranges() -> None:
    shapes = profile_shapes(SPEC, ProfileSizes(opt_batch=4, max_batch=32, opt_samples=8, max_samples=16))
    assert shapes == {
        "frame.bev": ((1, 2, 32, 32), (4, 2, 32, 32), (32, 2, 32, 32)),
        "noise.position": ((1, 4, 1, 12, 2), (4, 4, 8, 12, 2), (32, 4, 16, 12, 2)),
        "state.tracker.steps": ((1,), (4,), (32,)),
    }


def test_profile_refuses_unknown_axes_and_inconsistent_sizes() -> None:
    odd = GraphSpec("g", (TensorSpec("x", "float32", ("agents",)),), ())
    with pytest.raises(ValueError, match="unknown dynamic axis 'agents'"):
        profile_shapes(odd, ProfileSizes())
    with pytest.raises(ValueError, match="opt_batch <= max_batch"):
        ProfileSizes(opt_batch=8, max_batch=4)


def test_inputs_outside_the_profile_are_refused_naming_them() -> None:
    profiles = profile_shapes(SPEC, ProfileSizes(max_batch=8))
    check_profile("step", {"frame.bev": (8, 2, 32, 32)}, profiles)
    with pytest.raises(InputError, match=r"'frame.bev' has shape \[9, 2, 32, 32\].*max_batch"):
        check_profile("step", {"frame.bev": (9, 2, 32, 32)}, profiles)


def test_engine_may_lack_unused_inputs_but_not_outputs() -> None:
    check_engine_io(SPEC, ["frame.bev", "noise.position"], ["plan.trajectory"])  # steps dropped by the export
    with pytest.raises(ArtifactError, match="inputs not in the spec: \\['extra'\\]"):
        check_engine_io(SPEC, ["frame.bev", "extra"], ["plan.trajectory"])
    with pytest.raises(ArtifactError, match="spec outputs the engine lacks: \\['plan.trajectory'\\]"):
        check_engine_io(SPEC, ["frame.bev"], [])


def _key(**changes: object) -> str:
    args = {
        "graph_sha256": "a" * 64,
        "trt_version": "10.3.0",
        "gpu": "H100 (sm_90)",
        "recipe": FP32,
        "profiles": profile_shapes(SPEC, ProfileSizes()),
    } | changes
    return cache_key(**args)


def test_cache_key_changes_with_each_ingredient() -> None:
    keys = [
        _key(),
        _key(graph_sha256="b" * 64),
        _key(trt_version="10.4.0"),
        _key(gpu="H100 (sm_89)"),
        _key(gpu="A100 (sm_90)"),
        _key(recipe=FP16_BUILDER_FLAG),
        _key(profiles=profile_shapes(SPEC, ProfileSizes(max_batch=32))),
        _key(profiles=profile_shapes(SPEC, ProfileSizes(opt_samples=4))),
    ]
    assert len(set(keys)) == len(keys)
    assert _key() == _key()  # and nothing else (no time, no path) goes in


def test_cache_key_of_strongly_typed_fp16_follows_the_converter(monkeypatch: pytest.MonkeyPatch) -> None:
    before = _key(recipe=FP16_STRONGLY_TYPED)
    monkeypatch.setattr("deploy.fp16.CONVERTER_VERSION", 99)
    assert _key(recipe=FP16_STRONGLY_TYPED) != before


def test_cache_file_round_trips_header_and_engine() -> None:
    engine = bytes(range(256)) * 10
    header, decoded = decode_cache(encode_cache(HEADER, engine))
    assert header == HEADER and decoded == engine


def test_matching_cache_is_loaded() -> None:
    verdict = cached_engine(encode_cache(HEADER, b"engine"), HEADER)
    assert verdict.engine == b"engine" and not verdict.stale


def test_missing_cache_is_built_without_a_warning() -> None:
    verdict = cached_engine(None, HEADER)
    assert verdict.engine is None and not verdict.stale


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("trt_version", "10.4.0", "built by TensorRT 10.3.0, this is 10.4.0"),
        ("gpu", "NVIDIA A100 (sm_80)", "built for NVIDIA H100 80GB HBM3 \\(sm_90\\), this GPU is NVIDIA A100"),
        ("key", "j" * 64, "key differs"),
        ("precision", "fp32", "key differs"),
    ],
)
def test_cache_built_elsewhere_is_rebuilt_not_loaded(field: str, value: str, reason: str) -> None:
    verdict = cached_engine(encode_cache(HEADER, b"engine"), replace(HEADER, **{field: value}))
    assert verdict.engine is None and verdict.stale
    assert re.search(reason, verdict.reason)


def _corruptions() -> dict[str, bytes]:
    blob = encode_cache(HEADER, b"x" * 1000)
    start = len(b"drivestack-tensorrt-engine\n") + 4
    flipped = bytearray(blob)
    flipped[-10] ^= 0xFF
    bad_json = blob[:start] + b"[" + blob[start + 1 :]
    other_format = json.loads(blob[start : blob.index(b"}") + 1]) | {"format": 0}
    head = json.dumps(other_format).encode()
    return {
        "empty": b"",
        "garbage": b"\x00" * 64,
        "magic only": blob[:start],
        "truncated header": blob[: start + 20],
        "truncated engine": blob[:-1],
        "altered engine": bytes(flipped),
        "bad json": bad_json,
        "other format": blob[: start - 4] + len(head).to_bytes(4, "big") + head + b"x" * 1000,
    }


@pytest.mark.parametrize("name", list(_corruptions()))
def test_corrupted_cache_is_rebuilt(name: str) -> None:
    blob = _corruptions()[name]
    with pytest.raises(CacheCorrupted):
        decode_cache(blob)
    verdict = cached_engine(blob, HEADER)
    assert verdict.engine is None and verdict.stale and verdict.reason.startswith("corrupted")


def test_engine_path_holds_graph_precision_and_key(tmp_path: Path) -> None:
    assert (
        engine_path(tmp_path, "stack_step", "fp16", "abcdef" * 10)
        == tmp_path / "stack_step-fp16-abcdefabcdefabcd.engine"
    )
    assert engine_path(None, "g", "fp32", "0" * 64).parent == Path("~/.cache/drivestack/tensorrt").expanduser()


def test_cache_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cache" / "g.engine"
    atomic_write_bytes(path, b"first")
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second" and sorted(p.name for p in path.parent.iterdir()) == ["g.engine"]

    def crash(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(core_io.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"third")
    assert path.read_bytes() == b"second" and sorted(p.name for p in path.parent.iterdir()) == ["g.engine"]


def test_parser_failure_names_the_file_and_errors() -> None:
    message = parse_failure("runs/export/step.onnx", ["In node 3 (Foo): UNSUPPORTED_NODE", "second"])
    assert "runs/export/step.onnx" in message and "UNSUPPORTED_NODE" in message and "second" in message


def test_tensorrt_dtypes_map_to_torch() -> None:
    fake = types.SimpleNamespace(DataType=types.SimpleNamespace(FLOAT="f32", HALF="f16", INT64="i64", BOOL="b"))
    assert torch_dtypes(fake) == {"f32": torch.float32, "f16": torch.float16, "i64": torch.int64, "b": torch.bool}


# --- Refusals ----------------------------------------------------------------------------------------------------


def _fake_tensorrt(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=version))


def test_missing_tensorrt_is_backend_unavailable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail
    with pytest.raises(BackendUnavailable, match="TensorRT is not installed.*drivestack\\[gpu\\]"):
        open_runtime(_artifact(tmp_path), "step", backend="tensorrt", device="cuda")


def test_cpu_device_is_backend_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_tensorrt(monkeypatch, "10.3.0")
    with pytest.raises(BackendUnavailable, match="CUDA devices only; got device 'cpu'"):
        TensorRTRuntime.from_artifact(None, "step", device="cpu")  # refused before the artifact is read


def test_no_gpu_is_backend_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_tensorrt(monkeypatch, "10.3.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendUnavailable, match="needs a CUDA GPU"):
        TensorRTRuntime.from_artifact(None, "step", device="cuda")


def test_old_tensorrt_is_backend_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_tensorrt(monkeypatch, "8.6.1")
    with pytest.raises(BackendUnavailable, match="too old"):
        TensorRTRuntime.from_artifact(None, "step", device="cuda")


# --- With TensorRT and a GPU ---------------------------------------------------------------------------------------


class _Step(nn.Module):
    """A small graph with the stack's shape of interface: a batch axis, a samples axis, an int64 input the export
    drops (unused), and float32 + int64 outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 12 * 3)

    def forward(self, bev: torch.Tensor, noise: torch.Tensor, steps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feat = torch.relu(self.conv(bev)).flatten(1)  # (B, 256)
        trajectory = self.head(feat).view(-1, 12, 3) + noise.mean(dim=(1, 2))[:, None, :]  # (B, 12, 3)
        return trajectory, trajectory[..., 0].argmax(-1)  # (B, 12, 3), (B,)


STEP_SPEC = GraphSpec(
    "step",
    inputs=(
        TensorSpec("frame.bev", "float32", ("batch", 2, 8, 8)),
        TensorSpec("noise.position", "float32", ("batch", 4, "samples", 3)),
        TensorSpec("state.tracker.steps", "int64", ("batch",)),
    ),
    outputs=(
        TensorSpec("plan.trajectory", "float32", ("batch", 12, 3)),
        TensorSpec("plan.chosen", "int64", ("batch",)),
    ),
)


def _example(batch: int = 2, samples: int = 5) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(batch * 100 + samples)
    return {
        "frame.bev": torch.randn(batch, 2, 8, 8, generator=generator),
        "noise.position": torch.randn(batch, 4, samples, 3, generator=generator),
        "state.tracker.steps": torch.arange(batch),
    }


def _artifact(root: Path) -> Path:
    """An export folder with one graph, `step`, in the layout `Artifact.open` reads."""
    torch.manual_seed(0)
    model = _Step().eval()
    root.mkdir(parents=True, exist_ok=True)
    names = STEP_SPEC.input_names + STEP_SPEC.output_names
    axes = {s.name: s.dynamic_axes for s in [*STEP_SPEC.inputs, *STEP_SPEC.outputs]}
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation and tracer warnings
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            tuple(_example().values()),
            str(root / "step.onnx"),
            input_names=names[:3],
            output_names=names[3:],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    torch.save(model.state_dict(), root / "weights.pt")
    sha = hashlib.sha256((root / "step.onnx").read_bytes()).hexdigest()
    graphs = {"step": {"file": "step.onnx", "sha256": sha, "spec": STEP_SPEC.to_dict()}}
    (root / "manifest.json").write_text(json.dumps({"format": 1, "graphs": graphs, "config": {}}))
    return root


def _reference(root: Path, feed: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    model = _Step().eval()
    model.load_state_dict(torch.load(root / "weights.pt"))
    with torch.no_grad():
        return model(*feed.values())


def test_artifact_helper_drops_the_unused_input(tmp_path: Path) -> None:
    """The GPU tests below rely on the export dropping `state.tracker.steps`, as the stack's exports do."""
    import onnx

    art = Artifact.open(_artifact(tmp_path))
    graph_inputs = [i.name for i in onnx.load(art.graph_path("step")).graph.input]
    assert "state.tracker.steps" in art.spec("step").input_names and "state.tracker.steps" not in graph_inputs


@needs_gpu  # the skipif nearest the function reports first: TensorRT missing, then no GPU
@needs_tensorrt
@pytest.mark.slow
@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 1e-4), ("fp16", 2e-2)])
def test_tensorrt_matches_torch(tmp_path: Path, precision: str, tolerance: float) -> None:
    root = _artifact(tmp_path / "art")
    runtime = open_runtime(
        root,
        "step",
        backend="tensorrt",
        device="cuda",
        precision=precision,
        cache_dir=tmp_path / "cache",
        max_batch=8,
        max_samples=8,
        opt_samples=4,
    )
    for batch, samples in [(1, 1), (2, 5), (8, 8)]:
        feed = _example(batch, samples)
        out = runtime.run(feed)
        trajectory, _ = _reference(root, feed)
        assert out["plan.trajectory"].device.type == "cuda" and out["plan.chosen"].dtype == torch.int64
        torch.testing.assert_close(out["plan.trajectory"].cpu(), trajectory, atol=tolerance, rtol=tolerance)
    assert runtime.describe()["engine_cache"] == str(runtime.engine_path) and runtime.engine_path.is_file()


@needs_gpu
@needs_tensorrt
@pytest.mark.slow
def test_engine_cache_is_reused_and_stale_or_corrupted_files_are_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = _artifact(tmp_path / "art")
    first = open_runtime(root, "step", backend="tensorrt", device="cuda", cache_dir=tmp_path / "cache")
    path, blob = first.engine_path, first.engine_path.read_bytes()
    expected = first.run(_example())["plan.trajectory"]

    def no_build(*args: object) -> bytes:
        raise AssertionError("the cached engine should have been loaded")

    with monkeypatch.context() as patch:
        patch.setattr(trt_backend, "_build", no_build)
        second = open_runtime(root, "step", backend="tensorrt", device="cuda", cache_dir=tmp_path / "cache")
        torch.testing.assert_close(second.run(_example())["plan.trajectory"], expected)

    header, engine = decode_cache(blob)
    damaged_files = [
        (blob[: len(blob) // 2], "corrupted"),  # truncated: caught by the header's size and SHA-256
        (encode_cache(header, b"not an engine" * 100), "cannot deserialize"),  # a whole file TensorRT rejects
        (encode_cache(replace(header, trt_version="0.0.0"), engine), "built by TensorRT 0.0.0"),
    ]
    for damaged, message in damaged_files:
        path.write_bytes(damaged)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=trt_backend.__name__):
            rebuilt = open_runtime(root, "step", backend="tensorrt", device="cuda", cache_dir=tmp_path / "cache")
        assert message in caplog.text
        torch.testing.assert_close(rebuilt.run(_example())["plan.trajectory"], expected)
        assert decode_cache(path.read_bytes())[0] == header


@needs_gpu
@needs_tensorrt
@pytest.mark.slow
def test_unparsable_graph_is_an_artifact_error_naming_it(tmp_path: Path) -> None:
    import onnx
    from onnx import helper

    root = _artifact(tmp_path / "art")
    bogus = helper.make_model(
        helper.make_graph(
            [helper.make_node("NoSuchOp", ["frame.bev"], ["plan.trajectory"], domain="bogus")],
            "g",
            [helper.make_tensor_value_info("frame.bev", onnx.TensorProto.FLOAT, ["batch", 2, 8, 8])],
            [helper.make_tensor_value_info("plan.trajectory", onnx.TensorProto.FLOAT, None)],
        )
    )
    onnx.save(bogus, root / "step.onnx")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["graphs"]["step"]["sha256"] = hashlib.sha256((root / "step.onnx").read_bytes()).hexdigest()
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"ONNX parser rejected .*step\.onnx"):
        open_runtime(root, "step", backend="tensorrt", device="cuda", cache_dir=tmp_path / "cache")
