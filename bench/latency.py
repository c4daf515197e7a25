"""Latency of the exported graphs per backend: each module and the fused stack step, at batch 1 and 16.

Backends (`--backends`, defaults by device):
    cpu:  torch (eager), torch-compile (`torch.compile`), onnxruntime (CPU provider)
    cuda: torch (eager), torch-cudagraph (a captured CUDA graph replayed), torch-compile,
          torch-compile-cudagraph (the compiled graph captured), onnxruntime-cuda,
          onnxruntime-tensorrt and tensorrt (fp32 and -fp16), where installed

Inputs are recorded simulator frames (`deploy.examples.recorded_inputs`); the
graphs have fixed slot counts, so their cost does not depend on the scene.
Each setting is timed `--repeats` times after warm-up calls (on CUDA each call
ends with a synchronize); a backend that is not available here is recorded
with its reason instead of a number. `check_ms` is the median of the input
checks alone (`GraphSpec.check_inputs`: names, dtypes, shapes, finite values),
which every call includes, and `check_share` its fraction of the call.

    python bench/latency.py --threads 1                       # docs/bench/latency_cpu.json
    python bench/latency.py --device cuda --out docs/bench/latency_cuda.json
"""

# ruff: noqa: E402  (the package imports must follow the sys.path fix below)
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from core.benchmark import machine_info, time_call
from core.io import write_json
from deploy.artifact import Artifact
from deploy.base import ArtifactError, BackendUnavailable, Runtime
from deploy.examples import recorded_inputs
from deploy.export import export_stack
from deploy.runtime import open_runtime
from stack.model import Stack
from stack.policy import stack_weights

GRAPHS = ("detector", "tracker", "predictor", "planner", "stack_step")
DEFAULT_BACKENDS = {
    "cpu": ("torch", "torch-compile", "onnxruntime"),
    "cuda": (
        "torch",
        "torch-cudagraph",
        "torch-compile",
        "torch-compile-cudagraph",
        "onnxruntime-cuda",
        "onnxruntime-tensorrt",
        "tensorrt",
        "tensorrt-fp16",
    ),  # fmt: skip
}


def open_backend(artifact: Path, graph: str, backend: str, device: str, threads: int | None) -> Runtime:
    """A runtime for one benchmark backend name."""
    if backend == "torch":
        return open_runtime(artifact, graph, "torch", device)
    if backend == "torch-compile":
        return open_runtime(artifact, graph, "torch", device, compile=True)
    if backend == "torch-cudagraph":
        return open_runtime(artifact, graph, "torch", device, cuda_graph=True)
    if backend == "torch-compile-cudagraph":
        return open_runtime(artifact, graph, "torch", device, compile=True, cuda_graph=True)
    if backend == "onnxruntime":
        return open_runtime(artifact, graph, "onnxruntime", "cpu", threads=threads)
    if backend.startswith("onnxruntime-"):
        return open_runtime(artifact, graph, "onnxruntime", backend.split("-", 1)[1])
    if backend.startswith("tensorrt"):
        precision = "fp16" if backend.endswith("fp16") else "fp32"
        return open_runtime(artifact, graph, "tensorrt", device, precision)
    raise ValueError(f"unknown backend {backend!r}")


def timed(runtime: Runtime, feed: dict, repeats: int, warmup: int) -> dict[str, float]:
    cuda = runtime.device.type == "cuda"
    feed = {name: value.to(runtime.device) for name, value in feed.items()}

    def call() -> None:
        runtime.run(feed)
        if cuda:
            torch.cuda.synchronize(runtime.device)

    result = time_call(call, repeats, warmup)
    check_ms = time_call(lambda: runtime.spec.check_inputs(feed), repeats, warmup)["median_ms"]
    return {**result, "check_ms": check_ms, "check_share": check_ms / result["median_ms"]}


def measure(args: argparse.Namespace, stack: Stack) -> list[dict]:
    rows = []
    feeds = {batch: recorded_inputs(stack, batch, warmup=args.warmup_frames) for batch in args.batches}
    art = Artifact.open(args.artifact)
    for backend in args.backends:
        for graph in args.graphs:
            names = art.spec(graph).input_names
            for batch in args.batches:
                row = {"backend": backend, "graph": graph, "batch": batch}
                try:
                    start = time.perf_counter()
                    runtime = open_backend(args.artifact, graph, backend, args.device, args.threads)
                    feed = {name: feeds[batch][name] for name in names}
                    row.update(timed(runtime, feed, args.repeats, args.warmup_calls))
                    row["setup_s"] = time.perf_counter() - start
                except (BackendUnavailable, ArtifactError, RuntimeError, ValueError) as exc:
                    row["unavailable"] = f"{type(exc).__name__}: {exc}"[:300]
                rows.append(row)
                _print_row(row)
    return rows


def _print_row(row: dict) -> None:
    if "median_ms" in row:
        print(
            f"{row['backend']:<22} {row['graph']:<12} {row['batch']:>5} {row['median_ms']:>10.3f} {row['p99_ms']:>9.3f}"
            f" {row['check_ms']:>9.3f} {100 * row['check_share']:>6.1f}%"
        )
    else:
        print(f"{row['backend']:<22} {row['graph']:<12} {row['batch']:>5}   unavailable: {row['unavailable'][:80]}")


def speedups(rows: list[dict]) -> dict[str, float]:
    """Median latency of torch eager over each other backend's, per (graph, batch)."""
    eager = {(r["graph"], r["batch"]): r["median_ms"] for r in rows if r["backend"] == "torch" and "median_ms" in r}
    out = {}
    for r in rows:
        key = (r["graph"], r["batch"])
        if r["backend"] != "torch" and "median_ms" in r and key in eager:
            out[f"{r['backend']}/{r['graph']}/b{r['batch']}"] = eager[key] / r["median_ms"]
    return out


def machine(device: str) -> dict:
    info: dict = machine_info()
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="stack checkpoint, exported if needed (default: shipped)")
    parser.add_argument("--artifact", type=Path, default=Path("runs/export"), help="exported artifact folder")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--backends", nargs="+", help="default: all for the device (module docstring)")
    parser.add_argument("--graphs", nargs="+", default=list(GRAPHS))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--threads", type=int, help="CPU threads for torch and onnxruntime (default: all)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup-calls", type=int, default=5)
    parser.add_argument("--warmup-frames", type=int, default=10, help="frames the stack sees before the timed one")
    parser.add_argument("--out", type=Path, help="JSON results (default docs/bench/latency_<device>.json)")
    args = parser.parse_args(argv)
    args.weights = stack_weights(args.weights)
    kind = args.device.split(":")[0]
    args.backends = args.backends or list(DEFAULT_BACKENDS[kind])
    args.out = args.out or Path(f"docs/bench/latency_{kind}.json")
    if args.threads:
        torch.set_num_threads(args.threads)
    if not (args.artifact / "manifest.json").is_file():
        print(f"exporting {args.weights} to {args.artifact}")
        export_stack(args.weights, args.artifact)
    stack = Stack.load(Artifact.open(args.artifact).checkpoint_path())
    print(f"{'backend':<22} {'graph':<12} {'batch':>5} {'median ms':>10} {'p99 ms':>9} {'check ms':>9} {'share':>7}")
    rows = measure(args, stack)
    ratios = speedups(rows)
    for key, ratio in ratios.items():
        if "/stack_step/" in key:
            print(f"torch eager / {key}: {ratio:.2f}x")
    write_json(args.out, {
        "rows": rows, "speedup_vs_torch_eager": ratios, "device": args.device, "threads": args.threads,
        "repeats": args.repeats, "artifact": str(args.artifact), "machine": machine(args.device),
    })  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
