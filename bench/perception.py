"""Perception benchmark: label efficiency with and without self-supervised pretraining, calibration, latency.

1. Record training drives, held-out ones (disjoint scenario seeds) and a few
   held-out ones of the ghost-heavy scenario (`ghost_road`, an empty road seen
   by a sensor with many false positives) as drive logs; every 5th frame of a
   drive is an item (the full preset).
2. Pretrain the detector once without labels (`perception.jobs.pretrain.pretrain`).
3. For each labeled fraction (1 %, 5 %, 10 %, 100 % of the training frames;
   at least one frame), fine-tune from scratch and from the pretrained weights
   with the same steps and seed (`finetune`), then fit the existence
   temperature on half of the held-out episodes and measure on the other half
   (`perception.evaluate`): mAP, ECE before and after calibration, position
   NLL and 1/2-sigma coverage, expected false positives per frame. Each
   calibrated model is also measured on every frame of the ghost-road set at
   that same temperature (refitting it on a road with no real objects would
   just push every existence to 0): false positives per frame, expected (sum of existence of
   unmatched slots) and above 0.5, and the existence of the slots within 2 m
   of a sensor ghost, the mean over those slots and the peak per ghost.
4. Time the detector forward pass (torch eager, inference mode) at batch 1
   and 32, with 1 thread and all threads: median and p99 latency.

    python bench/perception.py                 # full size, writes docs/bench/perception.json
    python bench/perception.py --quick         # tiny rasters, few steps: a smoke run (~1.5 min; JSON only with --out)
    python bench/perception.py --work runs/bench-perception   # keep datasets and checkpoints; rerun to continue

Estimated duration of the full run on this 2-core CPU: about 1.5 hours (an
estimate, extrapolated from timed steps on a shared machine: generating the
32 + 16 seeds of the 8-scenario hard suite about 20 min at 0.17 s per sim step
of 8 episodes; 2000 pretrain steps at about 1 s each at batch 16, about 35 min;
8 fine-tuning runs of 1000 steps at about 0.2 s each, about 30 min; 8
evaluations and the latency runs, about 5 min). `--device cuda` moves training
and evaluation to a GPU.
"""

# ruff: noqa: E402  (the package imports must follow the sys.path fix below)
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

# Run as `python bench/perception.py`, this file's folder is sys.path[0] and its own name would shadow
# the `perception` package; drop that entry (the repository root is on the path via the installed package).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from core.benchmark import machine_info
from core.io import write_json
from perception.config import DetectorConfig
from perception.detector import Detector
from perception.evaluate import EvaluateConfig, evaluate
from perception.jobs.common import frame_dataset
from perception.jobs.finetune import FinetuneConfig, finetune
from perception.jobs.pretrain import PretrainConfig, pretrain
from perception.model import PerceptionConfig
from sim.config import RasterConfig
from sim.drivelogs.index import INDEX_FILE, build_index
from sim.drivelogs.recorder import record_suite
from sim.policies import policy_at_raster

FRACTIONS = (0.01, 0.05, 0.10, 1.0)


@dataclass(frozen=True)
class Drives:
    """Drive logs to record: every scenario of `suite` for every seed, driven by `policy` at `raster`."""

    suite: str
    seeds: tuple[int, ...]
    policy: str = "pdm-gt"
    duration: float | None = None
    raster: RasterConfig = RasterConfig()


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of one benchmark run (`full()` and `quick()` presets)."""

    train: Drives
    test: Drives
    ghosts: Drives
    every: int
    perception: PerceptionConfig
    pretrain_steps: int
    finetune_steps: int
    batch_size: int
    latency_repeats: int
    fractions: tuple[float, ...] = FRACTIONS
    latency_batches: tuple[int, ...] = (1, 32)
    device: str = "cpu"

    @classmethod
    def full(cls) -> BenchConfig:
        data = Drives(suite="hard", seeds=tuple(range(32)))
        return cls(
            train=data,
            test=replace(data, seeds=tuple(range(1000, 1016))),
            ghosts=replace(data, suite="ghost_road", seeds=tuple(range(2000, 2008))),
            every=5,
            perception=PerceptionConfig(),
            pretrain_steps=2000,
            finetune_steps=1000,
            batch_size=16,
            latency_repeats=50,
        )

    @classmethod
    def quick(cls) -> BenchConfig:
        raster = RasterConfig(size=32, resolution=1.0)
        data = Drives(suite="cruising", policy="idm-gt", seeds=(0, 1, 2), duration=1.0, raster=raster)
        return cls(
            train=data,
            test=replace(data, seeds=(100, 101, 102, 103)),
            ghosts=replace(data, suite="ghost_road", seeds=(200, 201)),
            every=2,
            perception=PerceptionConfig(detector=DetectorConfig.tiny(raster)),
            pretrain_steps=4,
            finetune_steps=4,
            batch_size=4,
            latency_repeats=5,
        )


def _dataset(drives: Drives, path: Path) -> Path:
    """The drive logs at `path`, recorded unless a complete recording is already there (its index is written
    last: a rerun with the same `--work` continues where an interrupted run stopped)."""
    if not (path / INDEX_FILE).is_file():
        record_suite(drives.suite, drives.seeds, policy_at_raster(drives.policy, drives.raster), path, drives.raster,
                     duration=drives.duration, foxglove=False)  # fmt: skip
    index = build_index(path)
    if index.broken:  # a damaged recording is an error, not silently reused
        raise RuntimeError(f"{path}: broken drive logs {sorted(index.broken)}; delete the folder to record again")
    return path


def _checkpoint_every(steps: int) -> int:
    """Checkpoint often enough that an interrupted run loses little (jobs resume from the latest)."""
    return max(1, min(steps, 100))


def _ghost_columns(report: dict) -> dict:
    """The ghost-road evaluation's false positives and response to the sensor's ghosts."""
    fp, ghosts = report["metrics"]["false_positives"], report["metrics"]["ghosts"]
    return {
        "ghost_road_fp_per_frame": fp["expected_per_frame"],
        "ghost_road_fp_above_half_per_frame": fp["above_probability_per_frame"],
        "ghosts_per_frame": ghosts["num_ghosts"] / report["metrics"]["num_frames"],
        "ghost_slot_mean_existence": ghosts["mean_existence_of_responding_slots"],
        "ghost_peak_existence": ghosts["peak_existence_per_ghost"],
        "ghost_fraction_confident": ghosts["fraction_confident"],
    }


def _train_and_evaluate(cfg: BenchConfig, work: Path, data: dict[str, Path], pretrained: Path) -> list[dict]:
    rows = []
    train, test, ghost_road = data["train"], data["test"], data["ghosts"]
    frames = len(frame_dataset(FinetuneConfig(data=train, perception=cfg.perception, every=cfg.every), labels=False))
    for fraction in cfg.fractions:
        used = max(fraction, 1.0 / frames)  # at least one labeled frame
        for init in (None, pretrained):
            name = f"ft-{fraction:g}-{'pre' if init else 'scratch'}"
            final = finetune(
                FinetuneConfig(
                    data=train,
                    out=work / name,
                    perception=cfg.perception,
                    steps=cfg.finetune_steps,
                    batch_size=cfg.batch_size,
                    checkpoint_every=_checkpoint_every(cfg.finetune_steps),
                    resume=True,
                    label_fraction=used,
                    init=init,
                    device=cfg.device,
                    every=cfg.every,
                )
            )
            report = evaluate(EvaluateConfig(checkpoint=final, data=test, out=work / f"eval-{name}", device=cfg.device,
                                             every=cfg.every))  # fmt: skip
            ghost_report = evaluate(
                EvaluateConfig(
                    checkpoint=Path(report["calibrated_checkpoint"]),
                    data=ghost_road,
                    out=work / f"eval-ghosts-{name}",
                    fit_temperature=False,
                    device=cfg.device,
                    every=cfg.every,
                )
            )
            m, c = report["metrics"], report["calibration"]
            rows.append(
                {
                    "label_fraction": fraction,
                    "labeled_frames": round(used * frames),
                    "pretrained": init is not None,
                    "mAP": m["mAP"],
                    "ap_per_class": m["ap_per_class"],
                    "temperature": c["temperature"],
                    "position_cov_scale": c["position_cov_scale"],
                    "ece_before": c["test_ece_before"],
                    "ece_after": c["test_ece_after"],
                    "position_nll": m["position"]["nll_mean"],
                    "coverage_1sigma": m["position"]["coverage_1sigma"],
                    "coverage_2sigma": m["position"]["coverage_2sigma"],
                    "false_positives_per_frame": m["false_positives"]["expected_per_frame"],
                    **_ghost_columns(ghost_report),
                }
            )
    return rows


@torch.inference_mode()
def detector_latency(detector: DetectorConfig, batch: int, threads: int, repeats: int) -> dict:
    """Median and p99 of one eager forward pass, ms."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = Detector(detector).eval()
        x = torch.rand(batch, detector.in_channels, detector.raster.size, detector.raster.size)
        for _ in range(3):  # warm-up: allocator and kernel selection
            model(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1e3)
    finally:
        torch.set_num_threads(before)
    times.sort()
    p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
    return {"batch": batch, "threads": threads, "median_ms": statistics.median(times), "p99_ms": p99}


def run(cfg: BenchConfig, work: Path) -> dict:
    started = time.perf_counter()
    data = {name: _dataset(getattr(cfg, name), work / name) for name in ("train", "test", "ghosts")}
    pretrained = pretrain(
        PretrainConfig(
            data=data["train"],
            out=work / "pretrain",
            perception=cfg.perception,
            steps=cfg.pretrain_steps,
            batch_size=cfg.batch_size,
            checkpoint_every=_checkpoint_every(cfg.pretrain_steps),
            resume=True,
            device=cfg.device,
            every=cfg.every,
        )
    )
    rows = _train_and_evaluate(cfg, work, data, pretrained)
    threads = sorted({1, os.cpu_count() or 1})
    latency = [
        detector_latency(cfg.perception.detector, b, t, cfg.latency_repeats)
        for b in cfg.latency_batches
        for t in threads
    ]
    return {
        "label_efficiency": rows,
        "latency": latency,
        "config": {
            "train_seeds": list(cfg.train.seeds),
            "test_seeds": list(cfg.test.seeds),
            "ghost_road_seeds": list(cfg.ghosts.seeds),
            "suite": cfg.train.suite,
            "every": cfg.every,
            "raster": asdict(cfg.perception.detector.raster),
            "pretrain_steps": cfg.pretrain_steps,
            "finetune_steps": cfg.finetune_steps,
            "batch_size": cfg.batch_size,
        },
        "machine": machine_info(),
        "wall_s": time.perf_counter() - started,
    }


def _cell(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None or value != value else format(value, spec)


def format_tables(result: dict) -> str:
    header = (
        "label fraction  frames  pretrained     mAP  ECE before  ECE after       T  cov scale     NLL    cov1    cov2"
        "  FP/frame"
    )
    lines = [header]
    for r in result["label_efficiency"]:
        lines.append(
            f"{r['label_fraction']:>14.0%}  {r['labeled_frames']:>6}  {r['pretrained']!s:>10}  {_cell(r['mAP']):>6}  "
            f"{_cell(r['ece_before']):>10}  {_cell(r['ece_after']):>9}  {_cell(r['temperature']):>6}  "
            f"{_cell(r['position_cov_scale'], '.2f'):>9}  "
            f"{_cell(r['position_nll']):>6}  {_cell(r['coverage_1sigma']):>6}  {_cell(r['coverage_2sigma']):>6}  "
            f"{_cell(r['false_positives_per_frame']):>8}"
        )
    lines += ["", "ghost road (empty road, sensor ghosts): false positives and existence near the ghosts"]
    lines.append("label fraction  pretrained  ghosts/frame  FP/frame  FP>0.5/frame  slot mean p  ghost peak p  p>0.5")
    for r in result["label_efficiency"]:
        lines.append(
            f"{r['label_fraction']:>14.0%}  {r['pretrained']!s:>10}  {_cell(r['ghosts_per_frame'], '.2f'):>12}  "
            f"{_cell(r['ghost_road_fp_per_frame']):>8}  {_cell(r['ghost_road_fp_above_half_per_frame']):>12}  "
            f"{_cell(r['ghost_slot_mean_existence']):>11}  {_cell(r['ghost_peak_existence']):>12}  "
            f"{_cell(r['ghost_fraction_confident'], '.0%'):>5}"
        )
    lines += ["", "detector latency (torch eager)", "batch  threads  median ms  p99 ms"]
    for r in result["latency"]:
        lines.append(f"{r['batch']:>5}  {r['threads']:>7}  {r['median_ms']:>9.2f}  {r['p99_ms']:>6.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny dataset and few steps (smoke run)")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON results (default docs/bench/perception.json; --quick: none)"
    )
    parser.add_argument("--work", type=Path, default=None, help="directory for datasets and checkpoints (default temp)")
    parser.add_argument("--device", default="cpu", help="torch device for training and evaluation")
    args = parser.parse_args(argv)
    cfg = replace(BenchConfig.quick() if args.quick else BenchConfig.full(), device=args.device)
    with tempfile.TemporaryDirectory(prefix="bench-perception-") as tmp:
        work = args.work or Path(tmp)
        result = run(cfg, work)
        result["preset"] = "quick" if args.quick else "full"
        print(format_tables(result))
        out = args.out or (None if args.quick else Path("docs/bench/perception.json"))
        if out is not None:
            write_json(out, result)
            print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
