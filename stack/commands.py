"""`drivestack stack assemble|evaluate`: build the stack checkpoint from trained modules; closed-loop evidence."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from core.distributed import join_process_group, leave_process_group
from core.training import add_loop_arguments, loop_fields
from core.weights import CHECKOUT_WEIGHTS
from perception.model import Perception
from planning.config import PlannerConfig
from prediction.checkpoint import load_predictor
from stack.evaluate import BASELINES, DIAGNOSTICS, SIGMA_SWEEP, ClosedLoopConfig, evaluate
from stack.model import Stack
from stack.policy import STACK_WEIGHTS
from stack.report import text_table, write_report
from stack.train import EndToEndConfig, train

SEARCHED = ", found in $DRIVESTACK_WEIGHTS, the checkout's weights/ or the cache: docs/design.md"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("stack", help="assemble and evaluate the driving stack")
    jobs = p.add_subparsers(dest="job", metavar="JOB", required=True)

    a = jobs.add_parser("assemble", help="one stack checkpoint from perception and predictor checkpoints")
    a.add_argument("--perception", type=Path, required=True, help="calibrated perception checkpoint")
    a.add_argument("--predictor", type=Path, required=True, help="predictor checkpoint (trained on simulator windows)")
    a.add_argument("--out", type=Path, default=CHECKOUT_WEIGHTS / STACK_WEIGHTS,
                   help=f"stack checkpoint (default {CHECKOUT_WEIGHTS / STACK_WEIGHTS})")  # fmt: skip
    a.add_argument("--sigma", type=float, default=1.0, help="default risk sensitivity (default 1)")
    a.add_argument("--max-agents", type=int, default=PlannerConfig.max_agents, help="agents the planner weighs")
    a.set_defaults(run=assemble_main)

    t = jobs.add_parser("train", help="end-to-end fine-tuning with a planning loss (imitation + hindsight collisions)")
    t.add_argument("--weights", type=Path, help=f"the stack to start from (default: the shipped one{SEARCHED})")
    t.add_argument("--out", type=Path, default=Path("runs/stack-e2e"), help="checkpoint folder")
    t.add_argument("--logs", type=Path, metavar="DIR",
                   help="train on these expert drive logs instead of recording the suite into <out>/drives "
                        "(they must be at the detector's raster; --suite, --seeds, --first-seed and --expert "
                        "are then unused)")  # fmt: skip
    t.add_argument("--suite", default="hard", help="scenarios of the expert episodes (default hard)")
    t.add_argument("--seeds", type=int, default=4, help="expert episodes per scenario (default 4)")
    t.add_argument("--first-seed", type=int, default=400, help="first seed (default 400)")
    t.add_argument("--expert", default="pdm-gt", help="the policy that drives the episodes (default pdm-gt)")
    t.add_argument("--sigma", type=float, default=1.0, help="risk sensitivity while training (default 1)")
    t.add_argument("--collision-weight", type=float, default=1.0, help="weight of the hindsight collision cost")
    add_loop_arguments(t, steps=200, batch_size=8, lr=1e-4, warmup_steps=10, checkpoint_every=50, items="items")
    t.set_defaults(run=train_main)

    e = jobs.add_parser("evaluate", help="closed loop: stack, argmax ablation, baselines, sigma sweep; report")
    e.add_argument("--preset", choices=("full", "demo"), default="full", help="demo: a few minutes on a CPU")
    e.add_argument("--suite", help="suite name or file (full: hard, demo: demo)")
    e.add_argument("--seeds", type=int, help="episodes per scenario (full: 20, demo: 2)")
    e.add_argument("--first-seed", type=int, help="first seed (default 5000, clear of training seeds)")
    e.add_argument("--weights", type=Path, help=f"stack checkpoint (default: the shipped one{SEARCHED})")
    e.add_argument("--sigma", type=float, help="the stack's sigma (default: the checkpoint's)")
    e.add_argument("--sigmas", type=float, nargs="*", help=f"the sweep (full: {' '.join(map(str, SIGMA_SWEEP))})")
    e.add_argument("--baselines", nargs="*", help=f"rule-based policies (default {' '.join(BASELINES)})")
    diagnostics = " ".join(DIAGNOSTICS)
    e.add_argument("--diagnostics", nargs="*", choices=DIAGNOSTICS,
                   help=f"planning-vs-perception diagnostics (default {diagnostics}; none: skip)")  # fmt: skip
    e.add_argument("--plan-every", type=int, help="plan every N frames, perceive every frame (default 1)")
    e.add_argument("--batch-size", type=int, help="episodes simulated together")
    e.add_argument("--render", type=int, help="stack episodes rendered per scenario")
    e.add_argument("--out", type=Path, default=Path("runs/closed-loop"), help="output folder")
    e.add_argument("--device", default="cpu", help="torch device")
    e.set_defaults(run=evaluate_main)


def assemble_main(args: argparse.Namespace) -> int:
    perception = Perception.load(args.perception)
    predictor, _ = load_predictor(args.predictor)
    planner = dataclasses.replace(PlannerConfig(), max_agents=args.max_agents)
    stack = Stack.assemble(perception, predictor, planner=planner, sigma=args.sigma)
    path = stack.save(args.out, perception_from=str(args.perception), predictor_from=str(args.predictor))
    size = path.stat().st_size / 1e6
    print(f"wrote {path} ({size:.1f} MB)")
    return 0


def train_main(args: argparse.Namespace) -> int:
    cfg = EndToEndConfig(
        out=args.out,
        weights=args.weights,
        logs=args.logs,
        suite=args.suite,
        seeds=tuple(range(args.first_seed, args.first_seed + args.seeds)),
        expert=args.expert,
        sigma=args.sigma,
        collision_weight=args.collision_weight,
        **loop_fields(args),
    )
    path = train(cfg)
    print(f"wrote {path}")
    return 0


def evaluate_main(args: argparse.Namespace) -> int:
    base = ClosedLoopConfig.demo() if args.preset == "demo" else ClosedLoopConfig()
    changes = {
        "suite": args.suite,
        "seeds": args.seeds,
        "first_seed": args.first_seed,
        "sigma": args.sigma,
        "sigmas": tuple(args.sigmas) if args.sigmas is not None else None,
        "baselines": tuple(args.baselines) if args.baselines is not None else None,
        "diagnostics": tuple(args.diagnostics) if args.diagnostics is not None else None,
        "plan_every": args.plan_every,
        "batch_size": args.batch_size,
        "render": args.render,
    }
    cfg = dataclasses.replace(
        base,
        weights=args.weights,
        out=args.out,
        device=args.device,
        **{k: v for k, v in changes.items() if v is not None},
    )
    join_process_group()  # under torchrun the ranks share every run's episodes; rank 0 reports
    comparison = evaluate(cfg)
    if comparison is not None:
        report = write_report(comparison, cfg.out)
        print(text_table(comparison))
        for name, check in comparison["targets"].items():
            print(f"{name}: {'met' if check['met'] else 'NOT met' if check['met'] is False else 'not measured'}")
        print(f"wrote {cfg.out / 'comparison.json'} and {report}")
    return leave_process_group(0)
