"""Drive-log size per drive: one seed of each scenario recorded with one policy, with and without the
Foxglove channels. Prints a table, writes JSON.

Run it from an older checkout (`PYTHONPATH` set to it) to measure that checkout's format: where the
recorder has no Foxglove channels, only the plain size is measured.

    python bench/log_size.py --policy pdm-gt --out docs/bench/log_size.json
"""

# ruff: noqa: E402  (the package imports must follow the sys.path fix below)
from __future__ import annotations

import argparse
import inspect
import sys
import tempfile
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch

from core.benchmark import machine_info
from core.io import write_json
from sim.drivelogs.recorder import record_drives
from sim.policies import make_policy
from sim.scenarios import load_scenario, scenario_path

SCENARIOS = ("cruising", "lead_brake", "cut_in", "unprotected_left", "crosswalk_crowd", "occluded_pedestrian",
             "merge", "ghost_road")  # fmt: skip


def drive_bytes(scenario: str, policy: str, seed: int, **options: bool) -> int:
    with tempfile.TemporaryDirectory() as folder:
        (path,) = record_drives(load_scenario(scenario_path(scenario)), [seed], make_policy(policy), folder, **options)
        return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="pdm-gt", help="the driver (default pdm-gt, as fleet record)")
    parser.add_argument("--scenarios", nargs="+", default=SCENARIOS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    foxglove = "foxglove" in inspect.signature(record_drives).parameters
    rows = []
    for name in args.scenarios:
        plain = drive_bytes(name, args.policy, args.seed, **({"foxglove": False} if foxglove else {}))
        watched = drive_bytes(name, args.policy, args.seed, foxglove=True) if foxglove else None
        rows.append({"scenario": name, "plain_bytes": plain, "foxglove_bytes": watched})
        print(f"{name:22s} {plain / 1e3:9.0f} kB" + (f" {watched / 1e3:9.0f} kB" if watched else ""), flush=True)
    total = {key: sum(r[key] for r in rows) if foxglove or key == "plain_bytes" else None
             for key in ("plain_bytes", "foxglove_bytes")}  # fmt: skip
    print(f"{'all':22s} {total['plain_bytes'] / 1e3:9.0f} kB"
          + (f" {total['foxglove_bytes'] / 1e3:9.0f} kB" if foxglove else ""))  # fmt: skip
    if args.out:
        write_json(args.out, {"policy": args.policy, "seed": args.seed, "rows": rows, "total": total,
                              "machine": machine_info()})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
