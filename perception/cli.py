"""`drivestack perception pretrain|finetune|evaluate`: the perception jobs from the command line, on drive logs.

    drivestack fleet record --suite hard --seeds 32 --out data/drives          # the training drives
    drivestack perception pretrain --data data/drives --out runs/pre --steps 2000
    drivestack perception finetune --data data/drives --label-fraction 0.1 --init runs/pre/final.safetensors
    drivestack perception evaluate --checkpoint runs/ft/final.safetensors --data data/drives-test --out runs/eval

The detector's raster is read from the logs, so a model always fits the data it
is trained on; `--every` picks one frame in so many (default 5).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.training import add_loop_arguments, loop_fields
from perception.config import DetectorConfig
from perception.evaluate import EvaluateConfig
from perception.evaluate import main as evaluate_main
from perception.jobs.common import open_logs
from perception.jobs.finetune import FinetuneConfig, finetune
from perception.jobs.pretrain import PretrainConfig, pretrain
from perception.model import PerceptionConfig
from sim.drivelogs.index import logged_raster

DETECTOR_PRESETS = ("default", "tiny")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "perception",
        help="pretrain, finetune and evaluate the detector on drive logs",
        description="Perception jobs on drive logs (`drivestack fleet record`): pretrain (self-supervised), "
        "finetune (supervised on a labeled fraction), evaluate (calibrate + metrics).",
    )
    jobs = p.add_subparsers(dest="job", metavar="JOB", required=True)
    _add_pretrain(jobs)
    _add_finetune(jobs)
    _add_evaluate(jobs)


def _add_training(parser: argparse.ArgumentParser, out: str) -> None:
    _add_data(parser, "log folder of the training drives")
    parser.add_argument("--out", type=Path, default=Path(out), help=f"checkpoint directory (default {out})")
    parser.add_argument("--workers", type=int, default=0, help="processes reading the next batches while the "
                        "loop trains (default 0: read in the loop; worth it on a GPU)")  # fmt: skip
    parser.add_argument("--detector", choices=DETECTOR_PRESETS, default="default", help="network size preset")
    add_loop_arguments(
        parser, steps=1000, batch_size=16, lr=1e-3, warmup_steps=50, checkpoint_every=100, items="frames"
    )


def _add_data(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--data", type=Path, required=True, help=f"{what} (`drivestack fleet record`)")
    parser.add_argument("--every", type=int, default=5, help="one frame in N is an item (default 5)")
    parser.add_argument("--max-objects", type=int, default=64, help="label slots per frame (default 64)")


def _add_pretrain(jobs: argparse._SubParsersAction) -> None:
    p = jobs.add_parser("pretrain", help="self-supervised detector training (no labels)")
    _add_training(p, "runs/perception/pretrain")
    p.add_argument("--synthesis-weight", type=float, default=1.0, help="analysis-by-synthesis loss weight")
    p.add_argument("--contrastive-weight", type=float, default=0.5, help="temporal contrastive loss weight")
    p.add_argument("--next-frame-weight", type=float, default=0.5, help="next-frame prediction loss weight")
    p.set_defaults(run=run_pretrain)


def _add_finetune(jobs: argparse._SubParsersAction) -> None:
    p = jobs.add_parser("finetune", help="supervised detector training on a labeled fraction")
    _add_training(p, "runs/perception/finetune")
    p.add_argument("--label-fraction", type=float, default=1.0, help="fraction of frames labeled (default 1)")
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint (e.g. a pretrain's final)")
    p.set_defaults(run=run_finetune)


def _add_evaluate(jobs: argparse._SubParsersAction) -> None:
    p = jobs.add_parser("evaluate", help="calibrate the existence temperature and measure detection metrics")
    p.add_argument("--checkpoint", type=Path, required=True, help="perception checkpoint")
    _add_data(p, "held-out log folder")
    p.add_argument("--out", type=Path, default=Path("runs/perception/eval"), help="report directory")
    p.add_argument("--val-fraction", type=float, default=0.5, help="episodes used to fit the temperature")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode split")
    p.add_argument("--batch-size", type=int, default=32, help="frames per detector call (default 32)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(run=run_evaluate)


def perception_for(logs: Path, preset: str) -> PerceptionConfig:
    """The model config (`preset` size) whose detector reads the raster the drives at `logs` were recorded at."""
    raster = logged_raster(open_logs(logs))
    if preset == "tiny":
        return PerceptionConfig.tiny(raster, detector=DetectorConfig.tiny(raster))
    return PerceptionConfig(detector=DetectorConfig(raster=raster))


def _training_fields(args: argparse.Namespace) -> dict:
    return dict(data=args.data, out=args.out, every=args.every, max_objects=args.max_objects, workers=args.workers,
                **loop_fields(args))  # fmt: skip


def run_pretrain(args: argparse.Namespace) -> int:
    cfg = PretrainConfig(
        perception=perception_for(args.data, args.detector),
        synthesis_weight=args.synthesis_weight,
        contrastive_weight=args.contrastive_weight,
        next_frame_weight=args.next_frame_weight,
        **_training_fields(args),
    )
    print(f"wrote {pretrain(cfg)}")
    return 0


def run_finetune(args: argparse.Namespace) -> int:
    cfg = FinetuneConfig(
        perception=perception_for(args.data, args.detector),
        label_fraction=args.label_fraction,
        init=args.init,
        **_training_fields(args),
    )
    print(f"wrote {finetune(cfg)}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    cfg = EvaluateConfig(
        checkpoint=args.checkpoint,
        data=args.data,
        out=args.out,
        val_fraction=args.val_fraction,
        seed=args.seed,
        batch_size=args.batch_size,
        device=args.device,
        every=args.every,
        max_objects=args.max_objects,
    )
    evaluate_main(cfg)
    return 0
