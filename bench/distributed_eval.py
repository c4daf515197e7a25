"""A suite run in one process and under torchrun: the same episodes.csv, and the wall time of each.

Runs `drivestack sim` on the same suite, policy and seeds once as one process and once under `torchrun
--standalone --nproc-per-node N` (gloo, one thread per process in both, torchrun's default), then compares
the episodes.csv files byte for byte after sorting their rows (and as written) and the journals. Prints a
table, writes JSON.

    python bench/distributed_eval.py --suite hard --policy pdm --seeds 20 --first-seed 5000 \
        --out docs/bench/distributed_eval.json
"""

# ruff: noqa: E402  (the package imports must follow the sys.path fix below)
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from core.benchmark import machine_info
from core.io import write_json


def run(out: Path, processes: int, args: argparse.Namespace) -> float:
    """Seconds of one `drivestack sim` run into `out` on `processes` processes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]  # fmt: skip
    command = ["-m", "stack.cli", "sim", "--suite", args.suite, "--policy", args.policy, "--out", str(out),
               "--seeds", str(args.seeds), "--first-seed", str(args.first_seed),
               "--batch-size", str(args.batch_size)]  # fmt: skip
    start = time.perf_counter()
    subprocess.run([*launcher, *command], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def sorted_rows(path: Path) -> list[str]:
    header, *rows = path.read_text().splitlines()
    return [header, *sorted(rows)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="hard")
    parser.add_argument("--policy", default="pdm")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        one, many = Path(tmp) / "one", Path(tmp) / "many"
        seconds = {1: run(one, 1, args), args.processes: run(many, args.processes, args)}
        csv_one, csv_many = one / "episodes.csv", many / "episodes.csv"
        result = {
            "suite": args.suite,
            "policy": args.policy,
            "seeds": f"{args.first_seed}-{args.first_seed + args.seeds - 1}",
            "batch_size": args.batch_size,
            "episodes": len(csv_one.read_text().splitlines()) - 1,
            "seconds": {str(k): round(v, 1) for k, v in seconds.items()},
            "episodes_csv_identical_sorted": sorted_rows(csv_one) == sorted_rows(csv_many),
            "episodes_csv_identical_as_written": csv_one.read_bytes() == csv_many.read_bytes(),
            "journal_identical": (one / "episodes.jsonl").read_bytes() == (many / "episodes.jsonl").read_bytes(),
            "machine": machine_info(),
        }
    print(f"{'processes':>9} {'seconds':>8}")
    for processes, value in seconds.items():
        print(f"{processes:>9} {value:>8.1f}")
    for key in ("episodes_csv_identical_sorted", "episodes_csv_identical_as_written", "journal_identical"):
        print(f"{key}: {result[key]}")
    if args.out:
        write_json(args.out, result)
    return 0 if result["episodes_csv_identical_sorted"] else 1


if __name__ == "__main__":
    sys.exit(main())
