"""Training throughput from drive logs: samples per second per stage, one process against two (torchrun, gloo).

Records `--drives` cut_in drives (12 s) with the expert (unless `--logs` holds
some already), then runs `drivestack fleet train --stage S` for `--steps` steps
for every stage asked for: one process with the global batch, one process with
half of it (a rank's share), and two processes (torchrun, gloo) with the
global batch, each process on one thread. A sample is a stage's item: a frame
(pretrain, perception), a window of agent tracks (prediction), a planning step
after its perception warm-up (end2end, the shipped stack). Times are the
training seconds the loop stores in its last checkpoint (start-up, log
indexing and, for prediction and end2end, reading every training drive into
memory excluded; pretrain and perception decode frames while training, which
is included). Prints a table, writes JSON.

    python bench/fleet_throughput.py --stages pretrain perception prediction end2end
    python bench/fleet_throughput.py --device cuda --out docs/bench/fleet_throughput_cuda.json
"""

# ruff: noqa: E402  (the package imports must follow the sys.path fix below)
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from core.benchmark import machine_info
from core.checkpoint import load_checkpoint
from core.io import write_json
from core.training import latest_checkpoint
from sim.drivelogs.recorder import record_drives
from sim.policies import make_policy
from sim.scenarios import load_scenario, scenario_path

STAGES = ("pretrain", "perception", "prediction", "end2end")
# What each stage trains: the networks `drivestack make` ships (the shipped stack for end2end).
STAGE_ARGS = {
    "pretrain": ["--detector", "default"],
    "perception": ["--detector", "default"],
    "prediction": ["--predictor", "default"],
    "end2end": ["--warmup-frames", "16"],
}


def run_stage(
    stage: str, logs: Path, out: Path, processes: int, steps: int, global_batch: int, device: str = "cpu",
    amp: bool = False,
) -> float:  # fmt: skip
    """Train `steps` steps of `stage`; return the loop's training seconds."""
    args = ["fleet", "train", "--stage", stage, "--drive-logs", str(logs), "--out", str(out), *STAGE_ARGS[stage],
            "--steps", str(steps), "--batch-size", str(global_batch // processes), "--warmup-steps", "0",
            "--checkpoint-every", str(steps), "--val-fraction", "0", "--no-progress", "--device", device,
            *(["--amp"] if amp else [])]  # fmt: skip
    launcher = [sys.executable, "-m", "stack.cli"] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
        "-m", "stack.cli"]  # fmt: skip
    paths = [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    done = subprocess.run([*launcher, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
    return float(load_checkpoint(latest_checkpoint(out)).meta["train_seconds"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, help="a log folder to use (default: record into a temporary one)")
    parser.add_argument("--drives", type=int, default=4, help="cut_in drives to record (default 4)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--global-batch", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cpu (1 vs 2 processes) or cuda (fp32 vs mixed precision)")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/fleet_throughput.json"))
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        logs = args.logs or Path(tmp) / "logs"
        if args.logs is None:
            record_drives(load_scenario(scenario_path("cut_in")), list(range(args.drives)), make_policy("pdm-gt"), logs)
        half = args.global_batch // 2
        # CPU: one process with the global batch, one with a rank's share of it, and two processes.
        # CUDA: one process, float32 and mixed precision.
        runs = ([(1, args.global_batch, False), (1, half, False), (2, args.global_batch, False)]
                if args.device == "cpu" else [(1, args.global_batch, False), (1, args.global_batch, True)])  # fmt: skip
        for stage in args.stages:
            for processes, batch, amp in runs:
                out = Path(tmp) / f"{stage}-{processes}-{batch}-{amp}"
                seconds = run_stage(stage, logs, out, processes, args.steps, batch, args.device, amp)
                rows.append({"stage": stage, "processes": processes, "global_batch": batch, "amp": amp,
                             "seconds": seconds, "samples_per_s": args.steps * batch / seconds})  # fmt: skip
                print(format_row(rows[-1]), flush=True)
    print(f"{'stage':>10} {'processes':>9} {'global batch':>12} {'amp':>5} {'train s':>8} {'samples/s':>10}")
    for r in rows:
        print(format_row(r))
    speedups = {stage: speedup([r for r in rows if r["stage"] == stage]) for stage in args.stages}
    for stage, value in speedups.items():
        print(f"{stage}: last row over the first {value:.2f}x")
    write_json(args.out, {
        "steps": args.steps, "global_batch": args.global_batch, "stage_args": STAGE_ARGS, "rows": rows,
        "speedup": speedups, "threads_per_process": 1, "device": args.device, "machine": machine_info(),
    })  # fmt: skip
    print(f"wrote {args.out}")
    return 0


def format_row(r: dict) -> str:
    return (f"{r['stage']:>10} {r['processes']:>9} {r['global_batch']:>12} {r['amp']!s:>5} {r['seconds']:>8.1f} "
            f"{r['samples_per_s']:>10.1f}")  # fmt: skip


def speedup(rows: list[dict]) -> float:
    """The last configuration's samples per second over the first's (two processes over one on a CPU)."""
    return rows[-1]["samples_per_s"] / rows[0]["samples_per_s"]


if __name__ == "__main__":
    sys.exit(main())
