"""`drivestack sim`: run a scenario suite in closed loop with one policy."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from core.config import ConfigError
from core.plugins import load_plugin, plugin_names
from sim.config import RasterConfig
from sim.policies import make_policy, policy_names
from sim.suite import DriveLogFactory, SuiteConfig, run_suite


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sim",
        help="run a scenario suite in closed loop",
        description="Run every scenario of a suite for N seeds with one policy; write per-episode "
        "and summary metrics (JSON and CSV) and optional videos.",
    )
    p.add_argument("--suite", required=True, help="packaged suite name (e.g. hard), suite file or scenario file")
    p.add_argument("--policy", required=True, help=f"policy name: {', '.join(policy_names())}")
    p.add_argument("--seeds", type=int, default=20, help="episodes per scenario (default 20)")
    p.add_argument("--first-seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--out", type=Path, default=Path("runs/sim"), help="output directory")
    p.add_argument("--batch-size", type=int, default=32, help="episodes simulated together (default 32)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    p.add_argument("--render", type=int, default=0, help="render the first K seeds of each scenario")
    p.add_argument("--video-format", choices=("mp4", "gif"), default="mp4")
    p.add_argument(
        "--backend",
        default=None,
        help="for the stack policies: torch (the checkpoint, default), onnxruntime or tensorrt (an exported artifact)",
    )
    p.add_argument("--artifact", type=Path, help="exported artifact folder (`drivestack export`) for --backend")
    p.add_argument("--runtime-device", help="the backend's device: cpu, cuda[:N], or tensorrt[:N] for onnxruntime")
    p.add_argument("--runtime-threads", type=int, help="the backend's CPU threads (onnxruntime)")
    p.add_argument("--record", type=Path, metavar="DIR",
                   help="write each episode's drive log (MCAP, see `drivestack fleet`) to DIR")  # fmt: skip
    p.add_argument("--plan-every", type=int, help="stack policies: plan every N frames, perceive every frame")
    p.add_argument("--resume", action="store_true",
                   help="finish the interrupted run in --out, keeping its finished batches")  # fmt: skip
    p.set_defaults(run=main)


# Policy options that change how fast a run goes, never its results: a run may be resumed with others.
SPEED_ONLY = ("threads",)


def policy_options(args: argparse.Namespace) -> dict:
    """The options given for the policy (only those given: a policy that takes none accepts no flags)."""
    given = {
        "backend": args.backend,
        "artifact": args.artifact,
        "device": args.runtime_device,
        "plan_every": args.plan_every,
        "threads": args.runtime_threads,
    }
    return {name: value for name, value in given.items() if value is not None}


# The drive-log writer is a plug-in (`core.plugins`): the log format lives with the fleet tools, above sim.
DRIVE_LOGS = "drivestack.drive_logs"


def drive_logs(folder: Path | None, raster: RasterConfig) -> DriveLogFactory | None:
    """The suite's drive-log factory writing to `folder` (None: no logs)."""
    if folder is None:
        return None
    if "mcap" not in plugin_names(DRIVE_LOGS):
        raise ConfigError(f"--record: no drive-log writer is installed ({DRIVE_LOGS}); install drivestack: make venv")
    return functools.partial(load_plugin(DRIVE_LOGS, "mcap"), folder, raster=raster)


def main(args: argparse.Namespace) -> int:
    cfg = SuiteConfig(
        suite=args.suite,
        policy=args.policy,
        seeds=args.seeds,
        first_seed=args.first_seed,
        out=args.out,
        batch_size=args.batch_size,
        device=args.device,
        render=args.render,
        video_format=args.video_format,
        policy_settings={name: str(value) for name, value in policy_options(args).items() if name not in SPEED_ONLY},
    )
    policy = make_policy(args.policy, **policy_options(args))
    results = run_suite(cfg, policy, drive_logs(args.record, cfg.raster), resume=args.resume)
    failed = sum(r.error is not None for r in results)
    print(f"wrote {cfg.out}/summary.json, summary.csv, episodes.csv ({len(results)} episodes, {failed} failed)")
    return 1 if failed == len(results) else 0
