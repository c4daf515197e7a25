"""ETH/UCY leave-one-scene-out benchmark: the trained predictor against constant-velocity baselines.

For each scene (eth, hotel, univ, zara1, zara2) the fold's model file
(`weights/ethucy/<scene>.safetensors`, trained on the other scenes) and the
two baselines are measured on the scene's test split through the public API
only (`prediction.api.load` / `prediction.api.baseline`, then
`predict_positions` and `forecast`):

    minADE/minFDE over 20 samples, most-likely ADE/FDE, the exact mixture NLL
    (per-step marginal, nats), Trajectron++'s KDE NLL (2000 samples), mode usage
    (entropy of the mode weights, nats; modes above 5 % weight) and the coverage
    of the per-step 1- and 2-sigma regions (calibrated: 39.3 % and 86.5 %).

    python bench/ethucy.py --data ../shared/data/ethucy                 # evaluate the committed weights
    python bench/ethucy.py --data ../shared/data/ethucy --train         # train missing folds first (hours on CPU)
    python bench/ethucy.py --data ../shared/data/ethucy --scenes eth hotel --kde-samples 0

`--train` runs, per missing fold, exactly

    drivestack prediction train --ethucy DATA --scene SCENE --pedestrians-only --out runs/ethucy/SCENE

and copies its `final.safetensors` to the weights folder. The table's
"train min" column is the training wall time of the fold recorded in its model
file (on whatever machine trained it; the JSON keeps the platform of this run).
"""

# ruff: noqa: E402  (the package imports must follow the sys.path fix below)
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from core.io import atomic_copy, write_json
from prediction import api
from prediction.checkpoint import load_predictor
from prediction.config import PredictorConfig
from prediction.ethucy import SCENES, load_split
from prediction.evaluate import evaluate_scene
from prediction.train import PredictionTrainConfig, train

METRICS = ("min_ade", "min_fde", "ade", "fde", "nll_step", "kde_nll", "mode_entropy", "modes_used", "coverage_1sigma",
           "coverage_2sigma")


def train_fold(data: Path, scene: str, work: Path, weights: Path, steps: int | None) -> Path:
    """Train (or resume) the fold and copy its model file into `weights`."""
    fields = {"steps": steps} if steps else {}
    cfg = PredictionTrainConfig(out=work / scene, ethucy_root=data, scene=scene, resume=True,
                                predictor=PredictorConfig(vehicle_dynamics=False), **fields)  # fmt: skip
    final = train(cfg)
    target = weights / f"{scene}.safetensors"
    return atomic_copy(final, target)


def measure(model, windows, args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    row = evaluate_scene(model, windows, num_samples=args.samples, kde_samples=args.kde_samples, seed=args.seed)
    return {**row, "eval_s": time.perf_counter() - started}


def run(args: argparse.Namespace) -> dict:
    rows = []
    for scene in args.scenes:
        windows = load_split(args.data, scene, "test").windows
        path = args.weights / f"{scene}.safetensors"
        if args.train and not path.is_file():
            path = train_fold(args.data, scene, args.work, args.weights, args.steps)
        models = {"cv": api.baseline("cv"), "cv-sampled": api.baseline("cv-sampled")}
        train_minutes = None
        if path.is_file():
            models = {"drivestack": api.load(path), **models}
            train_minutes = load_predictor(path)[1].get("train_seconds", float("nan")) / 60
        else:
            print(f"{scene}: no model file {path} (run with --train); baselines only", file=sys.stderr)
        for name, model in models.items():
            row = measure(model, windows, args)
            rows.append({"scene": scene, "model": name, **row,
                         "train_minutes": train_minutes if name == "drivestack" else None})  # fmt: skip
            print(format_row(rows[-1]), flush=True)
    return {"rows": rows, "means": scene_means(rows, args.scenes)}


def scene_means(rows: list[dict], scenes: list[str]) -> list[dict]:
    """The mean over scenes of each model measured on all of them (each scene counts once)."""
    means = []
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        if {r["scene"] for r in mine} != set(scenes):
            continue
        means.append({"scene": "mean", "model": name, **{m: _mean([r.get(m) for r in mine]) for m in METRICS}})
    return means


def _mean(values: list) -> float | None:
    if any(v is None for v in values):
        return None
    return sum(values) / len(values)


def _cell(value, spec: str = ".3f") -> str:
    return "n/a" if value is None or value != value else format(value, spec)


HEADER = f"{'scene':<6} {'model':<11} {'minADE':>7} {'minFDE':>7} {'ADE':>6} {'FDE':>6} {'NLL':>7} {'KDE NLL':>8} " \
         f"{'H modes':>7} {'>5 %':>5} {'cov1':>5} {'cov2':>5} {'agents':>7} {'train min':>9}"  # fmt: skip


def format_row(r: dict) -> str:
    return (
        f"{r['scene']:<6} {r['model']:<11} {_cell(r.get('min_ade')):>7} {_cell(r.get('min_fde')):>7} "
        f"{_cell(r.get('ade')):>6} {_cell(r.get('fde')):>6} {_cell(r.get('nll_step'), '.2f'):>7} "
        f"{_cell(r.get('kde_nll'), '.2f'):>8} {_cell(r.get('mode_entropy'), '.2f'):>7} "
        f"{_cell(r.get('modes_used'), '.1f'):>5} {_cell(r.get('coverage_1sigma'), '.2f'):>5} "
        f"{_cell(r.get('coverage_2sigma'), '.2f'):>5} {r.get('agents', ''):>7} "
        f"{_cell(r.get('train_minutes'), '.1f'):>9}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="ETH/UCY folder (<scene>/{train,val,test})")
    parser.add_argument("--scenes", nargs="+", choices=SCENES, default=list(SCENES), help="scenes (default all)")
    parser.add_argument("--weights", type=Path, default=Path("weights/ethucy"), help="folder of <scene>.safetensors")
    parser.add_argument("--train", action="store_true", help="train folds whose model file is missing")
    parser.add_argument("--steps", type=int, default=None, help="training steps per fold (default: the job's)")
    parser.add_argument("--work", type=Path, default=Path("runs/ethucy"), help="training checkpoints")
    parser.add_argument("--samples", type=int, default=20, help="samples for minADE/minFDE (default 20)")
    parser.add_argument("--kde-samples", type=int, default=2000, help="samples for the KDE NLL (0 = skip)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/ethucy.json"), help="JSON results")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(HEADER)
    result = run(args)
    for r in result["means"]:
        print(format_row(r))
    result.update(
        machine={
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },  # fmt: skip
        samples=args.samples,
        kde_samples=args.kde_samples,
        wall_s=time.perf_counter() - started,
    )
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
