"""`drivestack prediction train|evaluate`: the prediction jobs from the command line.

drivestack prediction train --ethucy ../shared/data/ethucy --scene eth --out runs/pred-eth
drivestack fleet record --suite hard --seeds 16 --out data/drives      # simulator drives, then their windows:
drivestack prediction train --logs data/drives --out runs/pred-sim --interaction-radius 30
drivestack prediction evaluate --model runs/pred-eth/final.safetensors --ethucy ../shared/data/ethucy --scene eth
drivestack prediction evaluate --baseline cv-sampled --ethucy ../shared/data/ethucy --scene eth
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.io import write_json
from core.training import add_loop_arguments, loop_fields
from prediction import api
from prediction.config import PredictorConfig
from prediction.ethucy import SCENES, SPLITS, load_split
from prediction.evaluate import evaluate_scene
from prediction.logwindows import folder_windows
from prediction.train import OBJECTIVES, PredictionTrainConfig, train
from prediction.windows import TrajectoryWindows


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prediction",
        help="train and evaluate the predictor (ETH/UCY or drive logs)",
        description="Prediction jobs: train (the CVAE's ELBO or winner-takes-all), evaluate (minADE/FDE, "
        "most-likely ADE/FDE, mixture and KDE NLL), on ETH/UCY or on the windows of drive logs.",
    )
    jobs = p.add_subparsers(dest="job", metavar="JOB", required=True)
    _add_train(jobs)
    _add_evaluate(jobs)


def _add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ethucy", type=Path, default=None, help="ETH/UCY folder (<scene>/{train,val,test}/*.txt)")
    parser.add_argument("--scene", choices=SCENES, default=None, help="the fold's held-out scene")
    parser.add_argument("--logs", type=Path, nargs="*", default=[],
                        help="folders of drive logs (`drivestack fleet record`), cut into windows")  # fmt: skip


def _add_train(jobs: argparse._SubParsersAction) -> None:
    t = jobs.add_parser("train", help="train the predictor (mode assignment, or the ELBO)")
    _add_data(t)
    t.add_argument("--out", type=Path, default=Path("runs/prediction"), help="checkpoint directory")
    defaults = PredictorConfig()
    t.add_argument("--latent", type=int, default=defaults.latent, help="K, latent values (default 25)")
    t.add_argument("--hidden", type=int, default=defaults.hidden, help="agent encoding width (default 64)")
    t.add_argument("--decoder-hidden", type=int, default=defaults.decoder_hidden, help="decoder width (default 128)")
    t.add_argument("--interaction-radius", type=float, default=defaults.interaction_radius,
                   help="neighbours within this distance, m (default 3)")  # fmt: skip
    t.add_argument("--map-channels", type=int, default=0, help="map raster channels read per agent (0 = no map)")
    t.add_argument("--lanes", action="store_true",
                   help="read the lane centrelines near each agent (simulator and drive-log windows carry them)")
    t.add_argument("--lane-radius", type=float, default=defaults.lane_radius,
                   help="lanes within this distance of an agent are read, m (default 30)")  # fmt: skip
    t.add_argument(
        "--pedestrians-only",
        action="store_true",
        help="move every agent as a pedestrian (single integrator; no unicycle branch), e.g. ETH/UCY",
    )
    t.add_argument(
        "--objective",
        choices=OBJECTIVES,
        default="wta",
        help="wta: each future trains its closest mode (default); elbo: Trajectron++'s CVAE bound",
    )
    t.add_argument(
        "--wta-relax",
        type=float,
        default=0.05,
        help="wta: reconstruction weight shared by the non-closest modes (default 0.05)",
    )
    t.add_argument(
        "--wta-distance",
        type=float,
        default=1.0,
        help="wta: nats per metre of the closest mode's mean-path error (default 1)",
    )
    t.add_argument("--kl-weight", type=float, default=1.0, help="elbo: final KL weight beta (default 1)")
    t.add_argument("--kl-anneal-steps", type=int, default=1000, help="elbo: steps of the KL annealing (default 1000)")
    t.add_argument("--kl-min", type=float, default=0.07, help="elbo: free nats of KL per agent (default 0.07)")
    t.add_argument("--no-rotate", action="store_true", help="no random rotation of training windows")
    t.add_argument("--position-std", type=float, default=0.05, help="assumed position noise of the data, m")
    add_loop_arguments(t, steps=3000, batch_size=32, lr=3e-3, warmup_steps=100, checkpoint_every=250, items="windows")
    t.set_defaults(run=run_train)


def _add_evaluate(jobs: argparse._SubParsersAction) -> None:
    e = jobs.add_parser("evaluate", help="measure a model file or a baseline on held-out windows")
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=Path, help="model file (final.safetensors of a train job)")
    which.add_argument("--baseline", choices=sorted(api.BASELINES), help="a constant-velocity baseline")
    _add_data(e)
    e.add_argument("--split", choices=SPLITS, default="test", help="ETH/UCY split (default test)")
    e.add_argument("--samples", type=int, default=20, help="samples for minADE/minFDE (default 20)")
    e.add_argument("--kde-samples", type=int, default=2000, help="samples for the KDE NLL (0 = skip; default 2000)")
    e.add_argument("--seed", type=int, default=0, help="sampling seed")
    e.add_argument("--out", type=Path, default=None, help="write the report here (JSON)")
    e.add_argument("--device", default="cpu", help="torch device (default cpu)")
    e.set_defaults(run=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    predictor = PredictorConfig(
        latent=args.latent,
        hidden=args.hidden,
        decoder_hidden=args.decoder_hidden,
        interaction_radius=args.interaction_radius,
        map_channels=args.map_channels,
        lanes=args.lanes,
        lane_radius=args.lane_radius,
        vehicle_dynamics=not args.pedestrians_only,
    )
    cfg = PredictionTrainConfig(
        out=args.out,
        ethucy_root=args.ethucy,
        scene=args.scene,
        logs=tuple(args.logs),
        predictor=predictor,
        objective=args.objective,
        wta_relax=args.wta_relax,
        wta_distance=args.wta_distance,
        kl_weight=args.kl_weight,
        kl_anneal_steps=args.kl_anneal_steps,
        kl_min=args.kl_min,
        rotate=not args.no_rotate,
        position_std=args.position_std,
        **loop_fields(args),
    )
    print(f"wrote {train(cfg)}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    model = api.load(args.model, args.device) if args.model else api.baseline(args.baseline)
    if (args.ethucy is None) == (not args.logs):
        raise ValueError("evaluate: give either --ethucy with --scene, or --logs")
    if args.ethucy is not None:
        if args.scene is None:
            raise ValueError("evaluate: --ethucy needs --scene")
        windows = load_split(args.ethucy, args.scene, args.split).windows
    else:
        windows = TrajectoryWindows.concat([folder_windows(folder) for folder in args.logs])
    report = evaluate_scene(model, windows, num_samples=args.samples, kde_samples=args.kde_samples, seed=args.seed,
                            progress=True)  # fmt: skip
    report = {"model": str(args.model or args.baseline), "scene": args.scene, "split": args.split, **report}
    print(json.dumps(report, indent=1))
    if args.out is not None:
        write_json(args.out, report)
    return 0
