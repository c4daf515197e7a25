"""What incremental results cost: `sim.journal`'s appends (one JSON line, one write and an fsync per batch),
timed on the batches of a finished `drivestack sim` run, appended again to a fresh journal.

    python bench/journal_append.py runs/hard-pdm --out docs/bench/journal_append.json
"""

# ruff: noqa: E402  (the package imports must follow the sys.path fix below)
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from core.benchmark import machine_info
from core.io import write_json
from sim import journal


def time_appends(run: journal.Journal, repeats: int) -> list[float]:
    """Seconds to append every batch of `run` to a fresh journal, once per repeat."""
    batches, start = [], 0
    for scenario, seeds in run.batches:
        batches.append((scenario, seeds, run.results[start : start + len(seeds)]))
        start += len(seeds)
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(dir=run.path.parent) as folder:  # the same disk as the run
            fresh = journal.start(Path(folder), run.settings, run.total)
            begin = time.perf_counter()
            for scenario, seeds, rows in batches:
                fresh.append(scenario, seeds, rows)
            times.append(time.perf_counter() - begin)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the --out folder of a finished drivestack sim run")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("docs/bench/journal_append.json"))
    args = parser.parse_args(argv)
    run = journal.read(args.run)
    if run is None:
        parser.error(f"{args.run}: no {journal.JOURNAL} (run drivestack sim --out {args.run} first)")
    median = statistics.median(time_appends(run, args.repeats))
    batches = len(run.batches)
    print(f"{batches} batches, {len(run.results)} episodes: appends {median * 1e3:.1f} ms in all, "
          f"{median / batches * 1e3:.2f} ms a batch (median of {args.repeats})")  # fmt: skip
    write_json(args.out, {"run": str(args.run), "batches": batches, "episodes": len(run.results),
                          "all_appends_s": median, "repeats": args.repeats, "machine": machine_info()})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
