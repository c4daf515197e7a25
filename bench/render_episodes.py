"""Render a failing and a passing episode of each family from a finished closed-loop run.

Reads `<run>/episodes.csv` (a `drivestack stack evaluate` row, `stack` by default), picks per family the
worst episode (an at-fault collision, else the lowest score) and the best one, drives the same suite
again with the same batches (so each episode is the one the run drove) rendering those seeds, checks
that the re-run reproduced their scores, and writes a still of each and an index to `--out`; the GIFs
stay in `--work` (tens of MB).

    python bench/render_episodes.py --run runs/closed-loop/stack --suite hard --out docs/bench/episodes/hard

A sweep row is re-driven at its sigma (`--sigma`), a diagnostic row with `--row` (`stack-gt`, say); a scenario
of the run's suite as `--suite` renders that scenario's episodes only (the run's batches within one scenario
are the same).
"""

# ruff: noqa: E402  (the package imports must follow the sys.path fix below)
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from PIL import Image

from core.io import atomic_write_text, write_json
from sim.scenarios import resolve_suite
from sim.suite import SuiteConfig, run_suite
from stack.diagnostics import make_diagnostic
from stack.policy import StackPolicy, stack_weights


def pick(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """Per family, the worst and the best episode of `rows` (episodes.csv records without an error)."""
    chosen: dict[str, dict[str, dict]] = {}
    for family in sorted({r["family"] for r in rows}):
        mine = [r for r in rows if r["family"] == family and not r["error"]]
        worst = min(mine, key=lambda r: (-float(r["collided"]), float(r["score"])))
        best = max(mine, key=lambda r: (-float(r["collided"]), float(r["score"])))
        chosen[family] = {"failing": worst, "passing": best}
    return chosen


STILLS = (0.25, 0.45, 0.65)  # where in the episode the strip's frames are taken


def still(gif: Path, png: Path) -> None:
    """A strip of frames of `gif` at the fractions `STILLS` of the episode, side by side, as PNG."""
    with Image.open(gif) as frames:
        shots = []
        for fraction in STILLS:
            frames.seek(int(frames.n_frames * fraction))
            shots.append(frames.convert("RGB"))
    strip = Image.new("RGB", (sum(s.width for s in shots), max(s.height for s in shots)))
    for i, shot in enumerate(shots):
        strip.paste(shot, (sum(s.width for s in shots[:i]), 0))
    strip.save(png)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished run folder holding episodes.csv")
    parser.add_argument("--suite", required=True, help="the suite that run drove")
    parser.add_argument("--seeds", type=int, default=20, help="seeds per scenario of that run (default 20)")
    parser.add_argument("--first-seed", type=int, default=5000, help="its first seed (default 5000)")
    parser.add_argument("--batch-size", type=int, default=20, help="its batch size (default 20)")
    parser.add_argument("--weights", type=Path, help="the stack it drove (default: the shipped stack)")
    parser.add_argument("--plan-every", type=int, default=1, help="its plan period in frames (default 1)")
    parser.add_argument("--sigma", type=float, default=None, help="its sigma (default: the checkpoint's)")
    parser.add_argument("--row", default="stack", help="the row it was: stack, or a diagnostic (stack-gt, ...)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the stills and the index")
    parser.add_argument("--work", type=Path, default=Path("runs/render"), help="folder for the re-run and its GIFs")
    args = parser.parse_args(argv)
    args.weights = stack_weights(args.weights)
    driven = {scenario.name for scenario in resolve_suite(args.suite)}  # a run's subset: one scenario, say
    rows = [r for r in csv.DictReader((args.run / "episodes.csv").open(newline="")) if r["scenario"] in driven]
    chosen = pick(rows)
    wanted = tuple(sorted({(r["scenario"], int(r["seed"])) for pair in chosen.values() for r in pair.values()}))
    if args.row == "stack":
        policy = StackPolicy.from_checkpoint(args.weights, sigma=args.sigma, plan_every=args.plan_every)
    else:  # the diagnostics plan every frame
        policy = make_diagnostic(args.row, weights=args.weights, sigma=args.sigma)
    raster = policy.stack.cfg.perception.detector.raster  # the stack's and the diagnostics' alike
    cfg = SuiteConfig(suite=args.suite, policy=args.row, seeds=args.seeds, first_seed=args.first_seed,
                      out=args.work / args.suite, batch_size=args.batch_size, video_format="gif",
                      raster=raster, render_seeds=wanted)  # fmt: skip
    again = {(r.scenario, r.seed): r.metrics.get("score") for r in run_suite(cfg, policy)}
    args.out.mkdir(parents=True, exist_ok=True)
    lines = ["# Rendered episodes", "", f"Run `{args.run}`, suite `{args.suite}`; per family the worst and the "
             "best episode, re-driven with the same batches (score in the run / in the re-run). Each strip shows "
             "25, 45 and 65 % of the episode, each frame the world (left) and the sensor raster with detections, "
             "forecasts and the proposals as driven, brighter = lower risk (right).", ""]  # fmt: skip
    record = {}
    for family, pair in chosen.items():
        for kind, row in pair.items():
            name = f"{row['scenario']}_seed{row['seed']}"
            gif = cfg.out / "videos" / f"{name}.gif"
            png = args.out / f"{family}_{kind}.png"
            still(gif, png)
            rerun = again.get((row["scenario"], int(row["seed"])))
            record[f"{family}/{kind}"] = {"scenario": row["scenario"], "seed": int(row["seed"]),
                                          "score": float(row["score"]), "rerun_score": rerun,
                                          "collided": float(row["collided"])}  # fmt: skip
            rerun_text = "n/a" if rerun is None else f"{rerun:.3f}"
            collided = "yes" if float(row["collided"]) else "no"
            lines.append(f"- {family}, {kind}: `{name}`, score {float(row['score']):.3f} / {rerun_text}, at-fault "
                         f"collision {collided} (GIF: `{gif}`): ![{name}]({png.name})")  # fmt: skip
    atomic_write_text(args.out / "index.md", "\n".join(lines) + "\n")
    write_json(args.out / "episodes.json", record)
    print(f"wrote {args.out / 'index.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
