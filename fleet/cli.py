"""`drivestack fleet record|index`: drive logs from the simulator, and their index."""

from __future__ import annotations

import argparse
from pathlib import Path

from fleet.index import build_index
from fleet.recorder import record_drives
from sim.config import RasterConfig
from sim.policies import make_policy
from sim.scenarios import resolve_suite


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fleet", help="drive logs and retraining from them")
    sub = p.add_subparsers(dest="fleet_command", metavar="STEP")
    rec = sub.add_parser("record", help="drive a suite with a policy and write one MCAP log per drive")
    rec.add_argument("--suite", required=True, help="packaged suite name, suite file or scenario")
    rec.add_argument("--policy", default="pdm-gt", help="the driving policy (default pdm-gt, the expert)")
    rec.add_argument("--seeds", type=int, default=4, help="drives per scenario (default 4)")
    rec.add_argument("--first-seed", type=int, default=0)
    rec.add_argument("--out", type=Path, required=True, help="log folder")
    rec.set_defaults(run=run_record)
    idx = sub.add_parser("index", help="index a log folder (reports broken logs and skips them)")
    idx.add_argument("--logs", type=Path, required=True)
    idx.set_defaults(run=run_index)
    p.set_defaults(run=lambda args: p.print_help() or 2)


def run_record(args: argparse.Namespace) -> int:
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    policy = make_policy(args.policy)
    written = []
    for scenario in resolve_suite(args.suite):
        written += record_drives(scenario, seeds, policy, args.out, RasterConfig())
        print(f"{scenario.name}: {len(seeds)} drives -> {args.out}")
    print(f"wrote {len(written)} drive logs")
    return 0


def run_index(args: argparse.Namespace) -> int:
    index = build_index(args.logs)
    frames = sum(d.frames for d in index.drives)
    print(f"{len(index.drives)} drives, {frames} frames indexed in {args.logs / 'index.json'}")
    for name, error in index.broken.items():
        print(f"skipped {name}: {error}")
    return 0
