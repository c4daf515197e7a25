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

The windows come from seeds no training job uses (`make stack-weights` trains
on seeds 100-111 and 200-223 of `hard`); the file is generated when missing:

    drivestack prediction generate --out runs/simpred/heldout.safetensors --suite hard --seeds 8 --first-seed 400

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
from core.config import config_from_dict
from core.io import write_json
from prediction import api
from prediction.evaluate import evaluate_groups
from prediction.simdata import SimWindowsConfig, describe, load_windows, save_windows, simulate_windows, window_episodes
from prediction.windows import TrajectoryWindows
from sim.scenarios import resolve_suite
from sim.state import AgentKind

INTERACTION_FAMILIES = ("unprotected_left", "merge", "cut_in")
METRICS = ("ade", "fde", "min_ade", "min_fde", "modes_min_fde", "best_mode_weight", "nll_step", "mode_entropy",
           "modes_used", "top_weight", "coverage_1sigma", "coverage_2sigma")  # fmt: skip


def held_out_windows(path: Path, suite: str, seeds: int, first_seed: int) -> tuple[TrajectoryWindows, SimWindowsConfig]:
    """The windows file at `path` (simulated and written first when missing) and the config that made it."""
    if not path.is_file():
        cfg = SimWindowsConfig(suite=suite, seeds=tuple(range(first_seed, first_seed + seeds)))
        path.parent.mkdir(parents=True, exist_ok=True)
        save_windows(simulate_windows(cfg), path, describe(cfg))
    windows, meta = load_windows(path)
    return windows, config_from_dict(SimWindowsConfig, {**meta, "seeds": tuple(meta["seeds"])}, str(path))


def groups(windows: TrajectoryWindows, cfg: SimWindowsConfig) -> dict[str, torch.Tensor]:
    """[S, A] masks: all agents, each class (by its most likely class), each family, the interaction families."""
    out = {"all": windows.valid}
    kind = windows.class_probs.argmax(dim=-1)
    for k in AgentKind:
        out[f"class {k.name.lower()}"] = windows.valid & (kind == int(k))
    episode, episodes = window_episodes(cfg)
    if int(episode.numel()) != windows.batch_size:
        raise ValueError(f"windows file holds {windows.batch_size} windows, its config describes {episode.numel()}")
    family_of = {s.name: s.family for s in resolve_suite(cfg.suite)}
    window_family = [family_of[episodes[int(e)][0]] for e in episode]
    for family in dict.fromkeys(window_family):
        rows = torch.tensor([f == family for f in window_family])
        out[f"family {family}"] = windows.valid & rows[:, None]
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
    parser.add_argument("--windows", type=Path, default=Path("runs/simpred/heldout.safetensors"))
    parser.add_argument("--suite", default="hard", help="suite of the windows when generated (default hard)")
    parser.add_argument("--seeds", type=int, default=8, help="episodes per scenario when generated (default 8)")
    parser.add_argument("--first-seed", type=int, default=400, help="first seed when generated (default 400)")
    parser.add_argument("--model", action="append", default=[], help="name=path or name=stack:path (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/sim_prediction.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    windows, cfg = held_out_windows(args.windows, args.suite, args.seeds, args.first_seed)
    masks = groups(windows, cfg)
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
    write_json(args.out, {"rows": rows, "windows": str(args.windows), "windows_config": describe(cfg),
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
