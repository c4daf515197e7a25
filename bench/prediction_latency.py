"""Predictor latency on this CPU: one scene (batch 1) of 8, 32 and 64 agents.

Times the deterministic forecast (`Predictor.forward`: encoders, all K latent
values decoded, both dynamics integrated with covariance propagation, the
`Forecast` built) and 20 sampled trajectories per agent, torch eager in
inference mode, with 1 thread and with every core; median and p99 over
`--repeats` calls after 3 warm-up calls. Weights are random unless `--model`
is given (latency does not depend on their values). A model that reads lanes
gets a full frame's worth: `LANE_SLOTS` lanes of `LANE_POINTS` points, every
one valid and near the agents (the most a frame holds).

    python bench/prediction_latency.py                      # writes docs/bench/prediction_latency.json
"""

# ruff: noqa: E402  (the package imports must follow the sys.path fix below)
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from core.benchmark import machine_info, time_call
from core.io import write_json
from prediction.checkpoint import load_predictor
from prediction.config import PredictorConfig
from prediction.inputs import tracks_from_positions
from prediction.model import MapInput, Predictor, SampleNoise
from sim.sensors.lanes import LANE_POINTS, LANE_SLOTS, LANE_SPACING


def scene(agents: int, history: int, dt: float, seed: int = 0):
    """One scene of `agents` pedestrians walking in a 20 m square (all observed at every step)."""
    g = torch.Generator().manual_seed(seed)
    start = torch.rand(1, agents, 1, 2, generator=g) * 20
    velocity = torch.randn(1, agents, 1, 2, generator=g)
    t = torch.arange(history, dtype=torch.float32)[None, None, :, None] * dt
    xy = start + velocity * t
    return tracks_from_positions(xy, torch.ones(1, agents, history, dtype=torch.bool), dt)


def full_lanes() -> MapInput:
    """`LANE_SLOTS` parallel straight lanes 3.5 m apart across the scene's square, every point valid."""
    x = torch.arange(LANE_POINTS, dtype=torch.float32) * LANE_SPACING - 20.0
    y = torch.arange(LANE_SLOTS, dtype=torch.float32) * 3.5 - 20.0
    lanes = torch.stack(torch.broadcast_tensors(x[None, :], y[:, None]), dim=-1)[None]  # [1, N, P, 2]
    return MapInput(lanes=lanes, lanes_valid=torch.ones(lanes.shape[:3], dtype=torch.bool))


@torch.inference_mode()
def measure(model: Predictor, agents: int, threads: int, repeats: int) -> list[dict]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cfg = model.cfg
        tracks = scene(agents, cfg.history, cfg.dt)
        lanes = full_lanes() if cfg.lanes else None
        noise = SampleNoise.draw(1, agents, 20, cfg.horizon, torch.Generator().manual_seed(1))
        rows = [
            {"call": "forecast (K modes)", **time_call(lambda: model(tracks, lanes), repeats)},
            {"call": "20 samples", **time_call(lambda: model.sample_positions(tracks, noise, lanes), repeats)},
        ]
    finally:
        torch.set_num_threads(before)
    return [{"agents": agents, "threads": threads, **r} for r in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model file (default: random default-size weights)")
    parser.add_argument("--agents", type=int, nargs="+", default=[8, 32, 64], help="agents per scene")
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per setting (default 50)")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/prediction_latency.json"), help="JSON results")
    args = parser.parse_args(argv)
    if args.model is not None:
        model = load_predictor(args.model)[0]
    else:
        torch.manual_seed(0)
        model = Predictor(PredictorConfig()).eval()
    threads = sorted({1, os.cpu_count() or 1})
    rows = [r for a in args.agents for t in threads for r in measure(model, a, t, args.repeats)]
    print(f"{'agents':>6} {'threads':>7} {'call':<20} {'median ms':>9} {'p99 ms':>7}")
    for r in rows:
        print(f"{r['agents']:>6} {r['threads']:>7} {r['call']:<20} {r['median_ms']:>9.2f} {r['p99_ms']:>7.2f}")
    params = sum(p.numel() for p in model.parameters())
    write_json(args.out, {
        "rows": rows, "parameters": params, "config": model.cfg.to_dict(),
        "machine": machine_info(),
    })  # fmt: skip
    print(f"{params} parameters; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
