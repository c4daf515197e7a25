"""The TensorRT backend's decisions, as pure functions testable without TensorRT or a GPU.

Which FP16 recipe a TensorRT version takes, the optimisation profile of a graph
spec, the engine cache's key, file format and verdict (load, or rebuild and
why), and where a cached engine lives. `deploy.backends.tensorrt_backend` does
the building and running.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from deploy.base import PRECISIONS, ArtifactError, BackendUnavailable
from deploy.spec import BATCH, SAMPLES, GraphSpec, InputError

DEFAULT_CACHE_DIR = Path("~/.cache/drivestack/tensorrt")
FP32, FP16_BUILDER_FLAG, FP16_STRONGLY_TYPED = "fp32", "fp16-builder-flag", "fp16-strongly-typed"
CACHE_FORMAT = 1
_MAGIC = b"drivestack-tensorrt-engine\n"

ShapeRange = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # (min, opt, max) of one input


def trt_major(version: str) -> int:
    match = re.match(r"(\d+)(\.|$)", version)
    if match is None:
        raise ValueError(f"TensorRT version {version!r}: expected 'major.minor...'")
    return int(match.group(1))


def fp16_recipe(trt_version: str, precision: str) -> str:
    """How this TensorRT builds `precision`: FP32, FP16_BUILDER_FLAG (TensorRT 10: the builder may pick fp16 kernels
    for an fp32 graph) or FP16_STRONGLY_TYPED (TensorRT 11 removed the flag; the graph itself must be fp16)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    major = trt_major(trt_version)
    if major < 10:
        raise BackendUnavailable(f"TensorRT {trt_version} is too old: the tensorrt backend needs TensorRT 10 or newer")
    if precision == "fp32":
        return FP32
    return FP16_BUILDER_FLAG if major == 10 else FP16_STRONGLY_TYPED


@dataclass(frozen=True)
class ProfileSizes:
    """The range an engine accepts on each dynamic axis: 1..max, tuned for opt."""

    opt_batch: int = 1
    max_batch: int = 64
    opt_samples: int = 16
    max_samples: int = 64

    def __post_init__(self) -> None:
        for axis in (BATCH, SAMPLES):
            _, opt, top = self.range(axis)
            if not 1 <= opt <= top:
                raise ValueError(f"profile: need 1 <= opt_{axis} <= max_{axis}, got opt {opt}, max {top}")

    def range(self, axis: str) -> tuple[int, int, int]:
        if axis == BATCH:
            return 1, self.opt_batch, self.max_batch
        if axis == SAMPLES:
            return 1, self.opt_samples, self.max_samples
        raise ValueError(f"profile: unknown dynamic axis {axis!r} (expected {BATCH!r} or {SAMPLES!r})")


def profile_shapes(spec: GraphSpec, sizes: ProfileSizes) -> dict[str, ShapeRange]:
    """(min, opt, max) shape of every input of `spec`: named axes from `sizes`, fixed axes as they are."""
    shapes = {}
    for tensor in spec.inputs:
        ranges = [sizes.range(d) if isinstance(d, str) else (d, d, d) for d in tensor.shape]
        shapes[tensor.name] = tuple(tuple(r[i] for r in ranges) for i in range(3))
    return shapes


def check_profile(graph: str, shapes: dict[str, tuple[int, ...]], profiles: dict[str, ShapeRange]) -> None:
    """Raise `InputError` for an input outside the engine's profile, before TensorRT refuses it less clearly."""
    for name, shape in shapes.items():
        low, _, high = profiles[name]
        if any(not lo <= s <= hi for s, lo, hi in zip(shape, low, high, strict=True)):
            raise InputError(
                f"graph {graph}: input {name!r} has shape {list(shape)}, outside the TensorRT engine's profile "
                f"{list(low)}..{list(high)} (open the runtime with a larger max_batch / max_samples)"
            )


def check_engine_io(spec: GraphSpec, inputs: list[str], outputs: list[str]) -> None:
    """The engine may lack inputs the graph never used, but must take no input and lack no output outside the spec."""
    unknown = [name for name in inputs if name not in spec.input_names]
    missing = [name for name in spec.output_names if name not in outputs]
    if unknown or missing:
        raise ArtifactError(
            f"graph {spec.name}: the TensorRT engine does not match the spec "
            f"(inputs not in the spec: {unknown}; spec outputs the engine lacks: {missing})"
        )


def cache_key(graph_sha256: str, trt_version: str, gpu: str, recipe: str, profiles: dict[str, ShapeRange]) -> str:
    """SHA-256 over everything an engine depends on; the fp16 converter's version rides on the recipe."""
    if recipe == FP16_STRONGLY_TYPED:
        from deploy.fp16 import CONVERTER_VERSION

        recipe = f"{recipe}-v{CONVERTER_VERSION}"
    payload = {
        "graph": graph_sha256,
        "tensorrt": trt_version,
        "gpu": gpu,
        "recipe": recipe,
        "profiles": {name: [list(s) for s in shapes] for name, shapes in sorted(profiles.items())},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CacheHeader:
    """What a cached engine was built with; a file is loaded only when its header equals the current one."""

    trt_version: str
    gpu: str
    key: str
    precision: str


class CacheCorrupted(ValueError):
    """A cache file that is not a whole drivestack engine file."""


def encode_cache(header: CacheHeader, engine: bytes) -> bytes:
    meta = {
        **asdict(header),
        "format": CACHE_FORMAT,
        "engine_size": len(engine),
        "engine_sha256": hashlib.sha256(engine).hexdigest(),
    }
    head = json.dumps(meta, sort_keys=True).encode()
    return _MAGIC + len(head).to_bytes(4, "big") + head + engine


def decode_cache(blob: bytes) -> tuple[CacheHeader, bytes]:
    """Header and engine of a cache file; `CacheCorrupted` when any part is missing, truncated or altered."""
    if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 4:
        raise CacheCorrupted("not a drivestack engine file")
    start = len(_MAGIC) + 4
    end = start + int.from_bytes(blob[len(_MAGIC) : start], "big")
    try:
        meta = json.loads(blob[start:end])
        header = CacheHeader(*(str(meta[field]) for field in CacheHeader.__dataclass_fields__))
        size, digest, fmt = int(meta["engine_size"]), str(meta["engine_sha256"]), meta["format"]
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CacheCorrupted(f"unreadable header ({exc})") from exc
    engine = blob[end:]
    if fmt != CACHE_FORMAT:
        raise CacheCorrupted(f"cache format {fmt}, expected {CACHE_FORMAT}")
    if len(engine) != size or hashlib.sha256(engine).hexdigest() != digest:
        raise CacheCorrupted(f"engine is {len(engine)} bytes, header says {size}, or its SHA-256 differs")
    return header, engine


@dataclass(frozen=True)
class CacheVerdict:
    """A usable cached engine, or why there is none (`stale` when a file exists but must be rebuilt)."""

    engine: bytes | None
    reason: str
    stale: bool


def cached_engine(blob: bytes | None, want: CacheHeader) -> CacheVerdict:
    """Whether the cache file's bytes (None: no file) hold an engine built exactly as `want` describes."""
    if blob is None:
        return CacheVerdict(None, "no cached engine", stale=False)
    try:
        header, engine = decode_cache(blob)
    except CacheCorrupted as exc:
        return CacheVerdict(None, f"corrupted: {exc}", stale=True)
    if header.trt_version != want.trt_version:
        return CacheVerdict(None, f"built by TensorRT {header.trt_version}, this is {want.trt_version}", stale=True)
    if header.gpu != want.gpu:
        return CacheVerdict(None, f"built for {header.gpu}, this GPU is {want.gpu}", stale=True)
    if header != want:
        return CacheVerdict(None, "built from another graph, precision or profile (key differs)", stale=True)
    return CacheVerdict(engine, "cached", stale=False)


def engine_path(cache_dir: str | Path | None, graph: str, precision: str, key: str) -> Path:
    """The full key is in the name, so machines with different GPUs can share a cache folder without thrashing."""
    root = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    return root.expanduser() / f"{graph}-{precision}-{key[:16]}.engine"
