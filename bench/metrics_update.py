"""Time one `EpisodeAccumulator.update` on a random world (`sim.metrics.worlds`): the metrics' cost per sim step.

python bench/metrics_update.py --batch 1024 --agents 32 --out docs/bench/metrics_update_cpu.json
"""

# ruff: noqa: E402  (the package imports must follow the sys.path fix below)
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from core.benchmark import machine_info, time_call
from core.io import write_json
from sim.metrics.episode import EpisodeAccumulator
from sim.metrics.worlds import advance, random_world


def time_update(batch: int, agents: int, device: str, repeats: int = 50) -> float:
    """Median milliseconds of one accumulator update at [batch, agents]."""
    prev = random_world(batch, agents, device=device)
    state = advance(prev)
    acc = EpisodeAccumulator.init(prev)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def update() -> None:
        acc.update(prev, state)
        sync()

    return time_call(update, repeats, warmup=5)["median_ms"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--agents", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("docs/bench/metrics_update_cpu.json"))
    args = parser.parse_args(argv)
    ms = time_update(args.batch, args.agents, args.device, args.repeats)
    rate = args.batch * args.agents / (ms / 1e3)
    print(f"{'batch':>6} {'agents':>6} {'device':>6} {'ms/step':>8} {'agent-steps/s':>14}")
    print(f"{args.batch:>6} {args.agents:>6} {args.device:>6} {ms:>8.2f} {rate:>14.3g}")
    write_json(args.out, {"batch": args.batch, "agents": args.agents, "device": args.device, "median_ms": ms,
                          "repeats": args.repeats, "machine": machine_info()})  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
