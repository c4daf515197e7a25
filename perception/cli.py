"""`drivestack perception generate|pretrain|finetune|evaluate`: the perception jobs from the command line.

    drivestack perception generate --out data/frames --suite hard --seeds 32
    drivestack perception pretrain --data data/frames --out runs/pre --steps 2000
    drivestack perception finetune --data data/frames --label-fraction 0.1 --init runs/pre/final.safetensors
    drivestack perception evaluate --checkpoint runs/ft/final.safetensors --data data/frames-test --out runs/eval

The detector's raster, frame count and warp mode are read from the dataset, so
a model always fits the data it is trained on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.training import add_loop_arguments, loop_fields
from perception.config import DetectorConfig
from perception.data import DatasetConfig, FrameDataset, generate_dataset
from perception.evaluate import EvaluateConfig
from perception.evaluate import main as evaluate_main
from perception.jobs.finetune import FinetuneConfig, finetune
from perception.jobs.pretrain import PretrainConfig, pretrain
from perception.model import PerceptionConfig
from sim.config import RasterConfig

DETECTOR_PRESETS = ("default", "tiny")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "perception",
        help="generate detector datasets, pretrain, finetune and evaluate the detector",
        description="Perception jobs: generate (simulated frames + labels), pretrain (self-supervised), "
        "finetune (supervised on a labeled fraction), evaluate (calibrate + metrics).",
    )
    jobs = p.add_subparsers(dest="job", metavar="JOB", required=True)
    _add_generate(jobs)
    _add_pretrain(jobs)
    _add_finetune(jobs)
    _add_evaluate(jobs)


def _add_generate(jobs: argparse._SubParsersAction) -> None:
    g = jobs.add_parser("generate", help="simulate scenarios and write a frame dataset")
    g.add_argument("--out", type=Path, required=True, help="dataset directory")
    g.add_argument("--suite", default="hard", help="suite name, scenario name or .yaml path (default hard)")
    g.add_argument("--policy", default="pdm-gt", help="driving policy (default pdm-gt)")
    g.add_argument("--seeds", type=int, default=8, help="episodes per scenario (default 8)")
    g.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    g.add_argument("--duration", type=float, default=None, help="override every scenario's duration, s")
    g.add_argument("--record-every", type=int, default=5, help="record one frame every N sim steps (default 5)")
    g.add_argument("--max-objects", type=int, default=64, help="label slots per frame (default 64)")
    g.add_argument("--frames", type=int, default=3, help="BEV frames stacked per input (default 3)")
    g.add_argument("--raster-size", type=int, default=128, help="raster cells per side (default 128)")
    g.add_argument("--resolution", type=float, default=0.5, help="raster cell size, m (default 0.5)")
    g.add_argument("--episodes-per-shard", type=int, default=8, help="episodes per shard file (default 8)")
    g.set_defaults(run=run_generate)


def _add_training(parser: argparse.ArgumentParser, out: str) -> None:
    parser.add_argument("--data", type=Path, required=True, help="dataset directory")
    parser.add_argument("--out", type=Path, default=Path(out), help=f"checkpoint directory (default {out})")
    parser.add_argument("--detector", choices=DETECTOR_PRESETS, default="default", help="network size preset")
    add_loop_arguments(
        parser, steps=1000, batch_size=16, lr=1e-3, warmup_steps=50, checkpoint_every=100, items="frames"
    )


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
    p.add_argument("--data", type=Path, required=True, help="held-out dataset directory")
    p.add_argument("--out", type=Path, default=Path("runs/perception/eval"), help="report directory")
    p.add_argument("--val-fraction", type=float, default=0.5, help="episodes used to fit the temperature")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode split")
    p.add_argument("--batch-size", type=int, default=32, help="frames per detector call (default 32)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.set_defaults(run=run_evaluate)


def run_generate(args: argparse.Namespace) -> int:
    cfg = DatasetConfig(
        suite=args.suite,
        policy=args.policy,
        seeds=tuple(range(args.first_seed, args.first_seed + args.seeds)),
        duration=args.duration,
        record_every=args.record_every,
        max_objects=args.max_objects,
        frames=args.frames,
        raster=RasterConfig(size=args.raster_size, resolution=args.resolution),
        episodes_per_shard=args.episodes_per_shard,
    )
    index = generate_dataset(cfg, args.out)
    print(f"wrote {index} ({len(FrameDataset(args.out))} frames)")
    return 0


def perception_for(data: Path, preset: str) -> PerceptionConfig:
    """The model config whose detector input matches the dataset at `data`."""
    dataset = FrameDataset(data)
    fields = {"frames": dataset.frames, "warp_mode": dataset.warp_mode}
    if preset == "tiny":
        return PerceptionConfig.tiny(dataset.raster, detector=DetectorConfig.tiny(dataset.raster, **fields))
    return PerceptionConfig(detector=DetectorConfig(raster=dataset.raster, **fields))


def _training_fields(args: argparse.Namespace) -> dict:
    return dict(data=args.data, out=args.out, **loop_fields(args))


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
    )
    evaluate_main(cfg)
    return 0
