"""`drivestack export` and `drivestack deploy parity|check-trt`."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from deploy.graphs import GRAPH_NAMES
from stack.policy import stack_weights

log = logging.getLogger(__name__)


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a stack checkpoint to ONNX graphs",
        description="Write ONNX graphs of the detector, tracker step, predictor, planner and the fused stack step "
        "(dynamic batch; sigma, noise and the recurrent state as inputs) with a manifest into a folder.",
    )
    p.add_argument("--ckpt", type=Path, help="stack checkpoint (default: the shipped stack)")
    p.add_argument("--out", type=Path, required=True, help="artifact folder")
    p.add_argument("--graphs", nargs="+", choices=GRAPH_NAMES, default=list(GRAPH_NAMES))
    p.add_argument("--argmax", action="store_true", help="export the argmax ablation of the same weights")
    p.set_defaults(run=run_export)

    d = subparsers.add_parser("deploy", help="check an exported artifact: parity, TensorRT readiness")
    sub = d.add_subparsers(dest="deploy_command", metavar="STEP")
    par = sub.add_parser("parity", help="a backend against torch, per output, on random and recorded inputs")
    par.add_argument("--artifact", type=Path, required=True)
    par.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "tensorrt"))
    par.add_argument("--device", default="cpu", help="cpu, cuda[:N], or tensorrt[:N] (onnxruntime's provider)")
    par.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    par.add_argument("--graphs", nargs="+", choices=GRAPH_NAMES)
    par.add_argument("--json", type=Path, help="write the report here")
    par.set_defaults(run=run_parity)
    chk = sub.add_parser("check-trt", help="what TensorRT's ONNX parser would reject, without TensorRT")
    chk.add_argument("--artifact", type=Path, required=True)
    chk.add_argument("--max-batch", type=int, default=64)
    chk.set_defaults(run=run_check_trt)
    d.set_defaults(run=lambda args: d.print_help() or 2)


def run_export(args: argparse.Namespace) -> int:
    from deploy.export import export_stack

    art = export_stack(stack_weights(args.ckpt), args.out, graphs=args.graphs, argmax=args.argmax)
    for name in art.graph_names:
        spec = art.spec(name)
        print(f"{name}: {len(spec.inputs)} inputs, {len(spec.outputs)} outputs -> {art.root / (name + '.onnx')}")
    return 0


def run_parity(args: argparse.Namespace) -> int:
    from deploy.parity import format_table, parity, summarise

    cases = parity(args.artifact, args.backend, args.device, args.graphs, args.batches)
    summary = summarise(cases)
    print(format_table(cases))
    print(f"\nall outputs within {summary['tolerance']:g}: {summary['passed']}")
    if args.json:
        from core.io import atomic_write_text

        report = {**summary, "backend": args.backend, "device": args.device, "batches": args.batches}
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
    return 0 if summary["passed"] else 1


def run_check_trt(args: argparse.Namespace) -> int:
    from deploy.trt_check import check_artifact

    failed = False
    for name, findings in check_artifact(args.artifact, args.max_batch).items():
        errors = [f for f in findings if f.severity == "error"]
        failed |= bool(errors)
        print(f"{name}: {len(errors)} errors, {len(findings) - len(errors)} warnings")
        for f in findings:
            print(f"  {f.severity}: [{f.rule}] {f.where}: {f.message}")
    return 1 if failed else 0
