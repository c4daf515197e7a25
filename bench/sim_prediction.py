"""The predictor on held-out simulator windows: per agent class and per scenario family, against constant velocity.

Measures, through `prediction.api` and `prediction.evaluate.evaluate_groups`
(the agents' classes and boxes given, as the stack's tracks carry them):
most-likely ADE/FDE, minADE/minFDE over 20 samples, the best mode mean's FDE and
that mode's weight (one of the K alternatives follows the truth, and how much the
forecast believes it), the exact mixture NLL, mode
usage (entropy of the mode weights, modes above 5 %, the largest weight) and
the coverage of the per-step 1- and 2-sigma regions (39.3 % and 86.5 % when
calibrated). Groups: every agent, each class, each scenario family, and the
interaction families (unprotected_left, merge, cut_in) together.

The windows come from drives of seeds no training job uses (`make stack-weights`
trains on seeds 100-111 and 200-223 of `hard`); the drives are recorded when the
folder holds none yet:

    drivestack fleet record --suite hard --seeds 8 --first-seed 400 --out runs/simpred/heldout --no-foxglove

    python bench/sim_prediction.py --model new=runs/stack-weights/predictor/final.safetensors \\
        --model shipped=stack:weights/stack.safetensors --out docs/bench/sim_prediction.json

A model is `name=path` with `path` a predictor file (`drivestack prediction
train`) or `stack:<stack checkpoint>` (its predictor). `cv` and `cv-sampled`
are always measured.
"""

# ruff: noqa: E402  (the package imports must follow the sys.path fix below)
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from core.benchmark import machine_info
from core.io import write_json
from prediction import api
from prediction.evaluate import evaluate_groups
from prediction.logwindows import drive_windows_of
from prediction.windows import TrajectoryWindows
from sim.drivelogs.index import INDEX_FILE, DriveEntry, build_index
from sim.drivelogs.recorder import record_suite
from sim.policies import make_policy
from sim.state import AgentKind

INTERACTION_FAMILIES = ("unprotected_left", "merge", "cut_in")
METRICS = ("ade", "fde", "min_ade", "min_fde", "modes_min_fde", "best_mode_weight", "nll_step", "mode_entropy",
           "modes_used", "top_weight", "coverage_1sigma", "coverage_2sigma")  # fmt: skip


def held_out_windows(folder: Path, suite: str, seeds: int, first_seed: int) -> tuple[TrajectoryWindows, list[str]]:
    """The windows of the drives in `folder` (recorded first, with pdm-gt, when it holds no index) and [S]
    each window's scenario family."""
    if not (folder / INDEX_FILE).is_file():
        record_suite(suite, range(first_seed, first_seed + seeds), make_policy("pdm-gt"), folder, foxglove=False)
    index = build_index(folder)
    if index.broken:
        raise RuntimeError(f"{folder}: broken drive logs {sorted(index.broken)}")
    windows, drive_of = drive_windows_of(index, index.drives)
    return windows, [family(index.drives[int(d)]) for d in drive_of]


def family(entry: DriveEntry) -> str:
    return entry.metadata.get("family", entry.metadata.get("scenario", "unknown"))


def groups(windows: TrajectoryWindows, window_family: list[str]) -> dict[str, torch.Tensor]:
    """[S, A] masks: all agents, each class (by its most likely class), each family, the interaction families."""
    out = {"all": windows.valid}
    kind = windows.class_probs.argmax(dim=-1)
    for k in AgentKind:
        out[f"class {k.name.lower()}"] = windows.valid & (kind == int(k))
    for name in dict.fromkeys(window_family):
        rows = torch.tensor([f == name for f in window_family])
        out[f"family {name}"] = windows.valid & rows[:, None]
    rows = torch.tensor([f in INTERACTION_FAMILIES for f in window_family])
    out["interaction families"] = windows.valid & rows[:, None]
    return out


def load_model(spec: str):
    """`path` or `stack:path` -> a `prediction.api` predictor."""
    if spec.startswith("stack:"):
        from stack.model import Stack

        return api.TrajectoryPredictor(Stack.load(spec.removeprefix("stack:")).predictor)
    return api.load(spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, default=Path("runs/simpred/heldout"), help="folder of held-out drives")
    parser.add_argument("--suite", default="hard", help="suite of the drives when recorded (default hard)")
    parser.add_argument("--seeds", type=int, default=8, help="drives per scenario when recorded (default 8)")
    parser.add_argument("--first-seed", type=int, default=400, help="first seed when recorded (default 400)")
    parser.add_argument("--model", action="append", default=[], help="name=path or name=stack:path (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/sim_prediction.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    windows, window_family = held_out_windows(args.logs, args.suite, args.seeds, args.first_seed)
    masks = groups(windows, window_family)
    models = {name: load_model(path) for name, path in (m.split("=", 1) for m in args.model)}
    models.update({"cv": api.baseline("cv"), "cv-sampled": api.baseline("cv-sampled")})
    started = time.perf_counter()
    rows = []
    for name, model in models.items():
        totals = evaluate_groups(model, windows, masks, kde_samples=0, seed=args.seed)
        for group, total in totals.items():
            if total.count:
                rows.append({"model": name, "group": group, "agents": total.count, **total.means()})
    print(table(rows))
    write_json(args.out, {"rows": rows, "logs": str(args.logs), "windows": windows.batch_size,
                          "models": dict(m.split("=", 1) for m in args.model), "machine": machine_info(),
                          "wall_s": time.perf_counter() - started})  # fmt: skip
    print(f"wrote {args.out}")
    return 0


def table(rows: list[dict]) -> str:
    head = f"{'group':<28} {'model':<12} {'agents':>6} " + " ".join(f"{m:>9}" for m in METRICS)
    lines = [head]
    for r in sorted(rows, key=lambda r: (r["group"] != "all", r["group"])):
        lines.append(f"{r['group']:<28} {r['model']:<12} {r['agents']:>6} " + " ".join(
            f"{r[m]:>9.3f}" if m in r else f"{'n/a':>9}" for m in METRICS))  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
