"""One closed-loop row of a suite for any stack checkpoint: `stack` or a diagnostic (`stack-gt`, ...), at a sigma.

`drivestack stack evaluate` always evaluates the shipped configuration's rows; this drives a single row for another
checkpoint on the same episodes (seeds 5000-5019, batches of 20, as the evaluation does), e.g. to tell a
predictor's effect from the planner's:

    python bench/closed_loop_row.py --weights runs/stack-laneless.safetensors --row stack-gt \\
        --out runs/closed-loop-15-laneless-planfix/stack-gt

It writes the suite's `summary.json`, `episodes.csv` and table under `--out` (`sim.suite.run_suite`).
"""

# ruff: noqa: E402  (the package imports must follow the sys.path fix below)
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from sim.suite import SuiteConfig, run_suite
from stack.diagnostics import make_diagnostic
from stack.policy import StackPolicy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True, help="stack checkpoint")
    parser.add_argument("--row", default="stack", help="stack, or a diagnostic: stack-gt, stack-objects")
    parser.add_argument("--suite", default="hard")
    parser.add_argument("--sigma", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=5000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.row == "stack":
        policy = StackPolicy.from_checkpoint(args.weights, sigma=args.sigma)
    else:
        policy = make_diagnostic(args.row, weights=args.weights, sigma=args.sigma)
    raster = policy.stack.cfg.perception.detector.raster  # the stack's and the diagnostics' alike
    cfg = SuiteConfig(suite=args.suite, policy=args.row, seeds=args.seeds, first_seed=args.first_seed, out=args.out,
                      batch_size=20, raster=raster)  # fmt: skip
    run_suite(cfg, policy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
