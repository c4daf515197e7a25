"""TensorRT: a native engine built from an exported ONNX graph, cached on disk, run on torch CUDA tensors.

    runtime = open_runtime("runs/export", "stack_step", backend="tensorrt", device="cuda", precision="fp16")

An engine runs only on the TensorRT version and the GPU that built it, and a
build takes minutes, so the serialized engine is cached (default
~/.cache/drivestack/tensorrt, or `cache_dir`). The cache file is a small JSON
header (TensorRT version, GPU, key, precision, engine size and SHA-256)
followed by the engine; its key hashes everything that makes an engine valid:
the graph's SHA-256, the TensorRT version, the GPU with its compute
capability, the precision recipe and the optimisation profile. A file whose
header names another TensorRT or GPU is rebuilt, never loaded, and so is a
truncated or corrupted one, with a warning; a graph TensorRT cannot parse is an
`ArtifactError` naming the file and the parser's errors.

Precision. TensorRT enables TF32 for float32 math by default; it is switched
off so "fp32" means float32. For "fp16", TensorRT 10 takes `BuilderFlag.FP16`
on the fp32 graph and picks fp16 kernels where it likes; TensorRT 11 removed
that flag (networks are strongly typed: tensor dtypes are the precision), so
the engine is built from the graph converted by `deploy.fp16`, whose inputs
and outputs keep their dtypes. `fp16_recipe` makes that choice.

One optimisation profile covers every dynamic input: axes named "batch" span
1..max_batch (tuned for opt_batch), "samples" 1..max_samples. Inputs the
exported graph dropped (unused) are in the spec but not in the engine: they
are checked like the others, then not fed. A runtime has one execution
context, so one `run` at a time.

The decisions (recipe, profile, cache key and header, cache verdict) are pure
functions in `deploy.backends.tensorrt_cache`, tested without TensorRT or a GPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from core.io import atomic_write_bytes
from deploy.artifact import Artifact
from deploy.backends.tensorrt_cache import (
    FP16_BUILDER_FLAG,
    FP16_STRONGLY_TYPED,
    CacheHeader,
    ProfileSizes,
    ShapeRange,
    cache_key,
    cached_engine,
    check_engine_io,
    check_profile,
    encode_cache,
    engine_path,
    fp16_recipe,
    profile_shapes,
)
from deploy.base import ArtifactError, BackendUnavailable, Runtime
from deploy.spec import GraphSpec, InputError

log = logging.getLogger(__name__)

INSTALL_HINT = "install the `gpu` extra (pip install 'drivestack[gpu]') on a machine with an NVIDIA GPU"
_TORCH_DTYPES = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT8": torch.int8,
    "UINT8": torch.uint8,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "BOOL": torch.bool,
}


def parse_failure(source: str, errors: list[str]) -> str:
    listed = "\n".join(f"  {error}" for error in errors) or "  (the parser reported no details)"
    return f"TensorRT's ONNX parser rejected {source}:\n{listed}"


# --- TensorRT and CUDA ------------------------------------------------------------------------------------------


def import_tensorrt() -> ModuleType:
    """The `tensorrt` module, or `BackendUnavailable` saying why it cannot be used."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailable(f"TensorRT is not installed ({exc}); {INSTALL_HINT}") from exc
    except OSError as exc:  # the wheel is there but libnvinfer did not load
        raise BackendUnavailable(f"TensorRT is installed but its libraries failed to load ({exc})") from exc
    fp16_recipe(tensorrt.__version__, "fp32")  # refuses TensorRT < 10
    return tensorrt


def check_cuda_type(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    if dev.type != "cuda":
        raise BackendUnavailable(f"TensorRT runs on CUDA devices only; got device {str(device)!r} (use 'cuda[:N]')")
    return dev


def cuda_device(device: str | torch.device) -> torch.device:
    """`device` as an indexed CUDA device, or `BackendUnavailable`: TensorRT runs nowhere else."""
    dev = check_cuda_type(device)
    if not torch.cuda.is_available():
        raise BackendUnavailable("TensorRT needs a CUDA GPU, and torch sees none (no GPU or driver, or CPU-only torch)")
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= torch.cuda.device_count():
        raise BackendUnavailable(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return torch.device("cuda", index)


def torch_dtypes(trt: ModuleType) -> dict[Any, torch.dtype]:
    """TensorRT's DataType members (those this TensorRT has) to torch dtypes."""
    return {getattr(trt.DataType, name): dtype for name, dtype in _TORCH_DTYPES.items() if hasattr(trt.DataType, name)}


def gpu_identity(device: torch.device) -> str:
    props = torch.cuda.get_device_properties(device)
    return f"{props.name} (sm_{props.major}{props.minor})"


_LOGGER: Any = None


def _trt_logger(trt: ModuleType) -> Any:
    """One logger for every builder and runtime, as TensorRT expects."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def _graph_bytes(art: Artifact, graph: str, recipe: str) -> tuple[bytes, str]:
    """The ONNX bytes TensorRT builds from (fp16-converted for strongly typed fp16), and how to name them."""
    path = art.graph_path(graph)
    if recipe != FP16_STRONGLY_TYPED:
        return path.read_bytes(), str(path)
    import onnx

    from deploy.fp16 import convert_to_fp16

    try:
        return convert_to_fp16(onnx.load(path)).SerializeToString(), f"{path} (converted to fp16)"
    except ValueError as exc:
        raise ArtifactError(f"{path}: cannot convert to fp16 for a strongly typed TensorRT network: {exc}") from exc


def _build(
    trt: ModuleType, model: bytes, source: str, recipe: str, profiles: dict[str, ShapeRange], workspace_bytes: int
) -> bytes:
    """Parse `model`, configure precision, workspace and the profile, and return the serialized engine."""
    logger = _trt_logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch in TensorRT 10, strongly typed in 11: both the default now
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model):
        raise ArtifactError(parse_failure(source, [str(parser.get_error(i)) for i in range(parser.num_errors)]))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if recipe == FP16_BUILDER_FLAG:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name in (network.get_input(i).name for i in range(network.num_inputs)):
        if name not in profiles:
            raise ArtifactError(f"{source}: graph input {name!r} is not in the artifact's spec")
        profile.set_shape(name, *profiles[name])
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT could not build an engine from {source}; its log above says why")
    return bytes(serialized)


def _deserialize(trt: ModuleType, engine: bytes) -> tuple[Any, Any]:
    """(runtime, engine), the engine None when TensorRT rejects the bytes; the runtime must outlive its engine."""
    runtime = trt.Runtime(_trt_logger(trt))
    try:
        return runtime, runtime.deserialize_cuda_engine(engine)
    except (RuntimeError, TypeError):
        return runtime, None


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("TensorRT engine cache %s is unreadable (%s); rebuilding", path, exc)
        return None


def _store(path: Path, blob: bytes) -> None:
    try:
        atomic_write_bytes(path, blob)
    except OSError as exc:  # a read-only cache costs a rebuild next time, not this run
        log.warning("could not write the TensorRT engine cache %s (%s)", path, exc)


@dataclass(frozen=True)
class _Build:
    """Everything that decides which engine to load or build."""

    art: Artifact
    graph: str
    recipe: str
    profiles: dict[str, ShapeRange]
    header: CacheHeader
    path: Path
    workspace_bytes: int


def _load_or_build(trt: ModuleType, build: _Build) -> tuple[Any, Any]:
    verdict = cached_engine(_read(build.path), build.header)
    if verdict.engine is not None:
        runtime, engine = _deserialize(trt, verdict.engine)
        if engine is not None:
            return runtime, engine
        log.warning("TensorRT engine cache %s is corrupted (TensorRT cannot deserialize it); rebuilding", build.path)
    elif verdict.stale:
        log.warning("TensorRT engine cache %s: %s; rebuilding", build.path, verdict.reason)
    log.info("building a TensorRT %s engine for %s (this takes minutes)", build.header.precision, build.graph)
    model, source = _graph_bytes(build.art, build.graph, build.recipe)
    serialized = _build(trt, model, source, build.recipe, build.profiles, build.workspace_bytes)
    _store(build.path, encode_cache(build.header, serialized))
    runtime, engine = _deserialize(trt, serialized)
    if engine is None:
        raise RuntimeError(f"TensorRT could not deserialize the engine it just built from {source}")
    return runtime, engine


# --- The runtime ------------------------------------------------------------------------------------------------


class TensorRTRuntime(Runtime):
    """A TensorRT engine run on torch CUDA tensors; build one with `from_artifact`."""

    backend = "tensorrt"

    def __init__(
        self, spec: GraphSpec, device: torch.device, engine: Any, trt: ModuleType, build: _Build, keepalive: Any
    ) -> None:
        super().__init__(spec, device)
        self.precision, self.trt_version, self.engine_path = build.header.precision, trt.__version__, build.path
        self._profiles, self._engine, self._keepalive = build.profiles, engine, keepalive
        self._context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self._inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        check_engine_io(spec, self._inputs, self._outputs)
        dtypes = torch_dtypes(trt)
        self._dtypes = {n: dtypes[engine.get_tensor_dtype(n)] for n in names}

    @classmethod
    def from_artifact(
        cls,
        art: Artifact,
        graph: str,
        device: str = "cuda",
        precision: str = "fp32",
        cache_dir: str | Path | None = None,
        max_batch: int = 64,
        opt_batch: int = 1,
        max_samples: int = 64,
        opt_samples: int = 16,
        workspace_bytes: int = 4 << 30,
    ) -> TensorRTRuntime:
        """Load graph `graph`'s engine from the cache, or build and cache it; see the module docstring.

        Raises:
            BackendUnavailable: TensorRT (>= 10) is not importable, there is no CUDA GPU, or `device` is not CUDA.
            ArtifactError: TensorRT cannot parse the graph, or the engine does not match the spec.
        """
        check_cuda_type(device)  # first: a CPU device is a wrong request wherever TensorRT is installed
        trt = import_tensorrt()
        dev = cuda_device(device)
        recipe = fp16_recipe(trt.__version__, precision)
        profiles = profile_shapes(art.spec(graph), ProfileSizes(opt_batch, max_batch, opt_samples, max_samples))
        gpu = gpu_identity(dev)
        key = cache_key(art.graph_sha256(graph), trt.__version__, gpu, recipe, profiles)
        header = CacheHeader(trt.__version__, gpu, key, precision)
        build = _Build(
            art, graph, recipe, profiles, header, engine_path(cache_dir, graph, precision, key), workspace_bytes
        )
        with torch.cuda.device(dev):
            keepalive, engine = _load_or_build(trt, build)
            return cls(art.spec(graph), dev, engine, trt, build, keepalive)

    def _run(self, feed: dict[str, Tensor]) -> dict[str, Tensor]:
        check_profile(self.name, {n: tuple(feed[n].shape) for n in self._inputs}, self._profiles)
        with torch.cuda.device(self.device):
            inputs = {n: feed[n].to(self._dtypes[n]).contiguous() for n in self._inputs}  # e.g. int64 -> int32
            for name, tensor in inputs.items():
                if not self._context.set_input_shape(name, tuple(tensor.shape)):
                    raise InputError(f"graph {self.name}: TensorRT refused shape {list(tensor.shape)} for {name!r}")
                self._context.set_tensor_address(name, tensor.data_ptr())
            outputs = {name: self._output(name) for name in self._outputs}
            stream = torch.cuda.current_stream(self.device)
            if not self._context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError(f"graph {self.name}: TensorRT execution failed; its log above says why")
        return {s.name: outputs[s.name].to(s.torch_dtype) for s in self.spec.outputs}

    def _output(self, name: str) -> Tensor:
        """An empty output tensor of the shape TensorRT infers from the input shapes, bound to the context."""
        shape = tuple(self._context.get_tensor_shape(name))
        if any(size < 0 for size in shape):
            raise RuntimeError(f"graph {self.name}: output {name!r} has a data-dependent shape {list(shape)}")
        tensor = torch.empty(shape, dtype=self._dtypes[name], device=self.device)
        self._context.set_tensor_address(name, tensor.data_ptr())
        return tensor

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "precision": self.precision,
            "tensorrt": self.trt_version,
            "engine_cache": str(self.engine_path),
        }
