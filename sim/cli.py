"""`drivestack sim`: run a scenario suite in closed loop with one policy."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.distributed import join_process_group, leave_process_group
from sim.drivelogs.recorder import SuiteOrder, drive_recorder
from sim.policies import make_policy, policy_names
from sim.suite import DriveLogFactory, SuiteConfig, run_suite


@dataclass(frozen=True)
class PolicyFlag:
    """A command-line flag that sets one option of the policies that take it. The package that owns those
    policies declares its flags (the stack's: `stack.policy_flags`) and the composition root hands them to
    `add_parser`, so this command knows no policy's options.

    Attributes:
        flag: the flag, e.g. "--backend".
        option: the policy factory's keyword it sets, e.g. "backend".
        help: the flag's help line.
        type: converts the flag's text.
        changes_results: False for options that change only how fast a run goes (CPU threads): a run may be
            resumed with others, and they are left out of the run's settings.
    """

    flag: str
    option: str
    help: str
    type: Callable[[str], Any] = str
    changes_results: bool = True

    @property
    def dest(self) -> str:
        return "policy_option_" + self.option


def add_parser(subparsers: argparse._SubParsersAction, policy_flags: Sequence[PolicyFlag] = ()) -> None:
    """`drivestack sim`, with `policy_flags` (declared by the packages that own the policies) as its
    policy options."""
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
    p.add_argument("--record", type=Path, metavar="DIR",
                   help="write each episode's drive log (MCAP, see `drivestack fleet`) to DIR")  # fmt: skip
    p.add_argument("--resume", action="store_true",
                   help="finish the interrupted run in --out, keeping its finished batches")  # fmt: skip
    options = p.add_argument_group("policy options (only the policies that take them accept them)")
    for flag in policy_flags:
        options.add_argument(flag.flag, dest=flag.dest, type=flag.type, metavar=flag.option.upper(), help=flag.help)
    p.set_defaults(run=main, policy_flags=tuple(policy_flags))


def policy_options(args: argparse.Namespace, results_only: bool = False) -> dict[str, Any]:
    """The options given for the policy (only those given: a policy that takes none accepts no flags);
    `results_only`: without those that change only the speed."""
    return {
        flag.option: getattr(args, flag.dest)
        for flag in args.policy_flags
        if getattr(args, flag.dest) is not None and (flag.changes_results or not results_only)
    }


def drive_logs(folder: Path | None, cfg: SuiteConfig) -> DriveLogFactory | None:
    """The suite's drive-log factory writing to `folder` (None: no logs)."""
    if folder is None:
        return None
    return functools.partial(drive_recorder, folder, raster=cfg.raster, timing=cfg.timing,
                             suite=SuiteOrder.of(cfg.suite))  # fmt: skip


def main(args: argparse.Namespace) -> int:
    """One process, or one rank under torchrun: each rank runs its share of the episodes, rank 0 writes
    the results (`sim.shards`)."""
    rank, _ = join_process_group()
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
        policy_settings={name: str(value) for name, value in policy_options(args, results_only=True).items()},
    )
    policy = make_policy(args.policy, **policy_options(args))
    results = run_suite(cfg, policy, drive_logs(args.record, cfg), resume=args.resume)
    failed = sum(r.error is not None for r in results)
    if rank == 0:
        print(f"wrote {cfg.out}/summary.json, summary.csv, episodes.csv ({len(results)} episodes, {failed} failed)")
    return leave_process_group(1 if failed == len(results) else 0)
