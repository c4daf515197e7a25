"""`drivestack fleet ...`: drive logs, retraining from them, versions and the gate, the cycle, sweeps, FedAvg."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.distributed import leave_process_group
from core.training import add_loop_arguments, loop_fields
from fleet.cycle import CycleConfig, run_cycle
from fleet.federated import add_parser as add_federated_parser
from fleet.registry import GateSettings, Registry, promote
from fleet.sweep.cli import add_parser as add_sweep_parser
from fleet.train import STAGES, train_end2end, train_perception, train_prediction, train_pretrain
from perception.cli import DETECTOR_PRESETS, perception_for
from perception.jobs.finetune import FinetuneConfig
from perception.jobs.pretrain import PretrainConfig
from prediction.config import PredictorConfig
from prediction.train import PredictionTrainConfig
from sim.config import RasterConfig
from sim.drivelogs.index import build_index
from sim.drivelogs.recorder import record_suite
from sim.policies import policy_at_raster
from stack.train import EndToEndConfig


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fleet", help="drive logs and retraining from them")
    sub = p.add_subparsers(dest="fleet_command", metavar="STEP")
    for add in (_add_record, _add_index, _add_train, _add_promote, _add_cycle, add_sweep_parser, add_federated_parser):
        add(sub)
    p.set_defaults(run=lambda args: p.print_help() or 2)


def _add_record(sub: argparse._SubParsersAction) -> None:
    rec = sub.add_parser("record", help="drive a suite with a policy and write one MCAP log per drive")
    rec.add_argument("--suite", required=True, help="packaged suite name, suite file or scenario")
    rec.add_argument("--policy", default="pdm-gt", help="the driving policy (default pdm-gt, the expert)")
    rec.add_argument("--seeds", type=int, default=4, help="drives per scenario (default 4)")
    rec.add_argument("--first-seed", type=int, default=0)
    rec.add_argument("--out", type=Path, required=True, help="log folder")
    rec.add_argument("--duration", type=float, help="override every scenario's duration, s")
    rec.add_argument("--raster-size", type=int, default=RasterConfig().size, help="raster cells per side "
                     f"(default {RasterConfig().size})")  # fmt: skip
    rec.add_argument("--resolution", type=float, default=RasterConfig().resolution, help="raster cell size, m "
                     f"(default {RasterConfig().resolution})")  # fmt: skip
    rec.add_argument("--batch-size", type=int, default=8, help="drives simulated together (default 8)")
    rec.add_argument("--no-foxglove", action="store_true", help="tensor channels only (no Foxglove channels)")
    rec.set_defaults(run=run_record)


def _add_index(sub: argparse._SubParsersAction) -> None:
    idx = sub.add_parser("index", help="index a log folder (reports broken logs and skips them)")
    idx.add_argument("--logs", type=Path, required=True)
    idx.set_defaults(run=run_index)


def _add_train(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser("train", help="retrain a stage from drive logs (one process, or under torchrun)")
    tr.add_argument("--stage", choices=STAGES, required=True,
                    help="pretrain: self-supervised detector; perception: supervised detector on labeled frames; "
                         "prediction: predictor on the true tracks; end2end: the stack's planning loss")  # fmt: skip
    # `--drive-logs` is the same option for use under torchrun, whose own parser takes `--logs` for an
    # abbreviation of its `--logs-specs`.
    tr.add_argument("--logs", "--drive-logs", dest="logs", type=Path, required=True,
                    help="log folder (`drivestack fleet record`); under torchrun write --drive-logs")  # fmt: skip
    tr.add_argument("--out", type=Path, required=True, help="checkpoint directory")
    tr.add_argument("--val-fraction", type=float, default=0.2, help="drives held out (by a hash of their name)")
    tr.add_argument("--init", type=Path,
                    help="starting weights: a perception checkpoint (perception) or a stack checkpoint (end2end, "
                         "default: the shipped stack)")  # fmt: skip
    tr.add_argument("--detector", choices=DETECTOR_PRESETS, default="default", help="network size (pretrain, "
                    "perception from scratch)")  # fmt: skip
    tr.add_argument("--predictor", choices=("default", "tiny"), default="default", help="network size (prediction)")
    tr.add_argument("--label-fraction", type=float, default=1.0, help="labeled frames used (perception)")
    tr.add_argument("--every", type=int, default=5, help="one frame in N is an item (pretrain, perception; "
                    "default 5)")  # fmt: skip
    tr.add_argument("--workers", type=int, default=0, help="processes reading the next batches while the loop "
                    "trains (pretrain, perception; default 0)")  # fmt: skip
    tr.add_argument("--sigma", type=float, default=1.0, help="risk sensitivity while training (end2end)")
    tr.add_argument("--warmup-frames", type=int, default=32, help="frames perceived before each item (end2end)")
    add_loop_arguments(tr, steps=None, batch_size=None, lr=None, warmup_steps=None, checkpoint_every=None,
                       items="items")  # fmt: skip
    tr.set_defaults(run=run_train)


def _add_promote(sub: argparse._SubParsersAction) -> None:
    pro = sub.add_parser("promote", help="version a candidate stack; make it current only if it drives as well")
    pro.add_argument("--candidate", type=Path, required=True, help="stack checkpoint")
    pro.add_argument("--registry", type=Path, required=True, help="model registry folder")
    pro.add_argument("--suite", default="demo", help="closed-loop gate suite (default demo)")
    pro.add_argument("--seeds", type=int, default=2, help="episodes per scenario (default 2)")
    pro.add_argument("--first-seed", type=int, default=5000)
    pro.add_argument("--plan-every", type=int, default=2)
    pro.add_argument("--trained-on", type=Path, help="the training job's drives.json (the logs it saw)")
    _add_gate_decision(pro)
    pro.set_defaults(run=run_promote)


def _add_gate_decision(parser: argparse.ArgumentParser) -> None:
    """What promote and cycle share of the gate: the collision guard and the export of a promoted model."""
    parser.add_argument("--no-export", action="store_true", help="do not export a promoted model")
    parser.add_argument(
        "--max-collision-increase",
        type=float,
        metavar="PCT",
        help="also refuse a candidate whose at-fault collision rate is over PCT points worse",
    )


def _add_cycle(sub: argparse._SubParsersAction) -> None:
    cyc = sub.add_parser("cycle", help="record drives, retrain, evaluate in closed loop, promote, export")
    cyc.add_argument("--registry", type=Path, required=True, help="model registry folder")
    cyc.add_argument("--work", type=Path, required=True, help="folder of the cycles' logs, training runs, reports")
    cyc.add_argument("--cycles", type=int, default=1, help="cycles to run (default 1)")
    cyc.add_argument("--suite", default="demo", help="scenarios the fleet drives (default demo)")
    cyc.add_argument("--drives", type=int, default=2, help="drives per scenario and cycle (default 2)")
    cyc.add_argument("--policy", default="pdm-gt", help="the driver logged (default pdm-gt, the expert)")
    cyc.add_argument("--init", type=Path, help="first model of an empty registry (default: the shipped stack)")
    cyc.add_argument("--steps", type=int, default=50, help="fine-tuning steps per cycle (default 50)")
    cyc.add_argument("--batch-size", type=int, default=4)
    cyc.add_argument("--lr", type=float, default=1e-4)
    cyc.add_argument("--warmup-frames", type=int, default=16, help="frames perceived before each training item")
    cyc.add_argument("--gate-suite", default="demo", help="closed-loop gate suite (default demo)")
    cyc.add_argument("--gate-seeds", type=int, default=2, help="gate episodes per scenario (default 2)")
    _add_gate_decision(cyc)
    cyc.set_defaults(run=run_cycle_command)


def run_record(args: argparse.Namespace) -> int:
    """Record the suite's drives (`--batch-size` seeds at a time), then index the folder."""
    if args.seeds < 1:
        raise ValueError(f"fleet record: --seeds must be >= 1, got {args.seeds}")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    raster = RasterConfig(size=args.raster_size, resolution=args.resolution)
    policy = policy_at_raster(args.policy, raster)
    written = record_suite(args.suite, seeds, policy, args.out, raster, duration=args.duration,
                           batch_size=args.batch_size, foxglove=not args.no_foxglove,
                           progress=lambda name, n: print(f"{name}: {n} drives -> {args.out}", flush=True))  # fmt: skip
    index = build_index(args.out)
    print(f"wrote {len(written)} drive logs; {len(index.drives)} drives indexed in {args.out / 'index.json'}")
    return 0


def run_index(args: argparse.Namespace) -> int:
    index = build_index(args.logs)
    frames = sum(d.frames for d in index.drives)
    print(f"{len(index.drives)} drives, {frames} frames indexed in {args.logs / 'index.json'}")
    for name, error in index.broken.items():
        print(f"skipped {name}: {error}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    run = {"pretrain": _pretrain, "perception": _perception, "prediction": _prediction, "end2end": _end2end}
    print(f"wrote {run[args.stage](args)}")
    return leave_process_group(0)  # under torchrun, ends the process here


def _pretrain(args: argparse.Namespace) -> Path:
    cfg = PretrainConfig(perception=perception_for(args.logs, args.detector), out=args.out, every=args.every,
                         workers=args.workers, **loop_fields(args))  # fmt: skip
    return train_pretrain(args.logs, cfg, args.val_fraction)


def _perception(args: argparse.Namespace) -> Path:
    cfg = FinetuneConfig(perception=perception_for(args.logs, args.detector), out=args.out, init=args.init,
                         label_fraction=args.label_fraction, every=args.every, workers=args.workers,
                         **loop_fields(args))  # fmt: skip
    return train_perception(args.logs, cfg, args.val_fraction)


def _prediction(args: argparse.Namespace) -> Path:
    predictor = PredictorConfig.tiny() if args.predictor == "tiny" else PredictorConfig()
    cfg = PredictionTrainConfig(predictor=predictor, out=args.out, **loop_fields(args))
    return train_prediction(args.logs, cfg, args.val_fraction)


def _end2end(args: argparse.Namespace) -> Path:
    cfg = EndToEndConfig(weights=args.init, out=args.out, sigma=args.sigma,
                         warmup_frames=args.warmup_frames, **loop_fields(args))  # fmt: skip
    return train_end2end(args.logs, cfg, args.val_fraction)


def run_cycle_command(args: argparse.Namespace) -> int:
    gate = GateSettings(args.gate_suite, args.gate_seeds, export=not args.no_export,
                        max_collision_increase_pct=args.max_collision_increase)  # fmt: skip
    cfg = CycleConfig(registry=args.registry, work=args.work, suite=args.suite, drives=args.drives,
                      policy=args.policy, initial=args.init, steps=args.steps, batch_size=args.batch_size,
                      lr=args.lr, warmup_frames=args.warmup_frames, gate=gate)  # fmt: skip
    for _ in range(args.cycles):
        report = run_cycle(cfg)
        against = report["current_score_mean"]
        print(f"cycle {report['cycle']}: {report['drives_logged']} drives, v{report['candidate']:04d} trained from "
              f"v{report['trained_from']:04d} scores {report['score_mean']:.3f} against {against:.3f}: "
              f"{report['status']}; current v{report['current']:04d}")  # fmt: skip
    return 0


def run_promote(args: argparse.Namespace) -> int:
    gate = GateSettings(args.suite, args.seeds, args.first_seed, args.plan_every, export=not args.no_export,
                        max_collision_increase_pct=args.max_collision_increase)  # fmt: skip
    logs = json.loads(args.trained_on.read_text()) if args.trained_on else None
    version = promote(Registry(args.registry), args.candidate, gate, logs)
    score = version.metrics["score_mean"]
    against = version.metrics.get("current_score_mean")
    versus = f" against v{version.compared_with:04d} at {against:.3f}" if version.compared_with else ""
    print(f"v{version.version:04d}: score {score:.3f}{versus}: {version.status}")
    return 0 if version.status == "promoted" else 1
