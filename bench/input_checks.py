"""Cost of the runtime input checks (`GraphSpec.check_inputs`) per graph and batch, with and without the
finite-value check, alone and inside an onnxruntime call: what every backend pays before it runs.

    python bench/input_checks.py --artifact runs/export --out docs/bench/input_checks_cpu.json

One thread; recorded simulator frames (`deploy.examples.recorded_inputs`). "names, shapes" is the check with
the finite-value part switched off, "with finite" the full check every call runs. The call columns time
`Runtime.run` (onnxruntime, CPU) with and without the finite-value part, alternating call by call so both
see the same machine; "+%" is what the finite-value check adds to a call.
"""

# ruff: noqa: E402  (the package imports must follow the sys.path fix below)
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import deploy.spec as spec_module
from core.benchmark import machine_info, time_call
from core.io import write_json
from deploy.artifact import Artifact
from deploy.examples import recorded_inputs
from deploy.runtime import open_runtime
from stack.model import Stack

GRAPHS = ("tracker", "planner", "stack_step")


FULL_CHECK = spec_module._check_finite


def _set_finite_check(on: bool) -> None:
    spec_module._check_finite = FULL_CHECK if on else (lambda graph, values: None)


def measure(art: Artifact, stack: Stack, batches: list[int], repeats: int, calls: int) -> list[dict]:
    rows = []
    for batch in batches:
        inputs = recorded_inputs(stack, batch, warmup=10)
        for graph in GRAPHS:
            spec = art.spec(graph)
            feed = {name: inputs[name] for name in spec.input_names}
            try:
                row = {"graph": graph, "batch": batch, **_checks(spec, feed, repeats)}
                row.update(_calls(open_runtime(art.root, graph, "onnxruntime", threads=1), feed, calls))
            finally:
                _set_finite_check(True)
            rows.append(row)
            _print_row(row)
    return rows


def _print_row(r: dict) -> None:
    print(f"{r['graph']:<11} {r['batch']:>5} {r['names_shapes_ms']:>14.3f} {r['with_finite_ms']:>12.3f} "
          f"{r['call_with_ms']:>10.3f} {r['call_without_ms']:>10.3f} {r['call_added_pct']:>6.1f}")  # fmt: skip


def _checks(spec, feed: dict, repeats: int) -> dict[str, float]:
    _set_finite_check(True)
    with_finite = time_call(lambda: spec.check_inputs(feed), repeats, 50)["median_ms"]
    _set_finite_check(False)
    without = time_call(lambda: spec.check_inputs(feed), repeats, 50)["median_ms"]
    return {"names_shapes_ms": without, "with_finite_ms": with_finite, "finite_ms": with_finite - without}


def _calls(runtime, feed: dict, calls: int) -> dict[str, float]:
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(10):
        runtime.run(feed)
    for _ in range(calls):
        for on in (True, False):
            _set_finite_check(on)
            start = time.perf_counter()
            runtime.run(feed)
            times[on].append((time.perf_counter() - start) * 1e3)
    with_check, without = statistics.median(times[True]), statistics.median(times[False])
    return {"call_with_ms": with_check, "call_without_ms": without, "call_added_pct": 100 * (with_check / without - 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", type=Path, default=Path("runs/export"), help="exported artifact folder")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=2000, help="timed calls of the checks alone")
    parser.add_argument("--calls", type=int, default=200, help="timed graph calls per setting")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/input_checks_cpu.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    art = Artifact.open(args.artifact)
    stack = Stack.load(art.checkpoint_path())
    print(f"{'graph':<11} {'batch':>5} {'names, shapes':>14} {'with finite':>12} {'call with':>10} "
          f"{'without':>10} {'+%':>6}   (median ms)")  # fmt: skip
    rows = measure(art, stack, args.batches, args.repeats, args.calls)
    write_json(args.out, {"rows": rows, "repeats": args.repeats, "calls": args.calls, "threads": 1,
                          "backend": "onnxruntime", "machine": machine_info()})  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
