"""Latency of one stack step on this CPU at batch 1, and of its parts.

The shipped stack (`weights/stack.safetensors`) watches a crosswalk_crowd
episode (driven by `pdm-gt`) for `--warmup-frames` frames so its tracker holds
real tracks, then times, torch eager in inference mode, with 1 thread and with
every core: the perception step (detector + tracker), the forecast of those
tracks, the planner on that forecast, and the whole `Stack.step`. Median and
p99 over `--repeats` calls after 3 warm-up calls.

    python bench/stack_latency.py      # writes docs/bench/stack_latency.json
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
from sim.controller import TrackingController, centre_plan_to_rear_axle
from sim.policies import make_policy
from sim.runner import observe
from sim.scenarios import build_batch, load_scenario, scenario_path
from sim.step import step as sim_step
from stack.model import Stack
from stack.policy import stack_weights


@torch.inference_mode()
def warmed_up(stack: Stack, scenario: str, frames: int):
    """(state before the last frame, the last frame) after the stack watched `frames` frames of an expert episode."""
    state = build_batch(load_scenario(scenario_path(scenario)), [0])
    expert, controller = make_policy("pdm-gt"), TrackingController()
    seen = []
    for _ in range(frames):
        obs = observe(state, expert, stack.cfg.perception.detector.raster)
        seen.append(obs.frame)
        plan, _ = expert.act(None, obs)
        action = controller(state.ego, centre_plan_to_rear_axle(plan.trajectory, state.ego.wheelbase), plan.speeds)
        state = sim_step(state, action)
    stack_state, sigma = stack.initial_state(seen[0]), torch.ones(1)
    for frame in seen[:-1]:
        _, stack_state = stack.step(stack_state, frame, sigma)
    return stack_state, seen[-1]


@torch.inference_mode()
def measure(stack: Stack, state, frame, threads: int, repeats: int) -> list[dict]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        sigma = torch.ones(1)
        _, tracks, _ = stack.perception.step(state.perception, frame)
        forecast = stack.forecast_frame(tracks, frame)
        calls = {
            "perception (detector + tracker)": lambda: stack.perception.step(state.perception, frame),
            "prediction (K-mode forecast)": lambda: stack.forecast_frame(tracks, frame),
            "planning": lambda: stack.planner(forecast, frame, sigma, agent_size=tracks.size, previous=state.plan),
            "whole step": lambda: stack.step(state, frame, sigma),
        }
        rows = [{"call": name, **time_call(call, repeats)} for name, call in calls.items()]
        agents = int((tracks.valid & (tracks.existence > 0.5)).sum())
    finally:
        torch.set_num_threads(before)
    return [{"threads": threads, "tracks_believed": agents, **r} for r in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="stack checkpoint (default: the shipped stack)")
    parser.add_argument("--scenario", default="crosswalk_crowd", help="the episode the stack watches")
    parser.add_argument("--warmup-frames", type=int, default=80, help="frames watched before timing (default 80)")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per setting (default 30)")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/stack_latency.json"), help="JSON results")
    args = parser.parse_args(argv)
    args.weights = stack_weights(args.weights)
    stack = Stack.load(args.weights).eval()
    state, frame = warmed_up(stack, args.scenario, args.warmup_frames)
    threads = sorted({1, os.cpu_count() or 1})
    rows = [r for t in threads for r in measure(stack, state, frame, t, args.repeats)]
    print(f"{'threads':>7} {'call':<32} {'median ms':>9} {'p99 ms':>7}")
    for r in rows:
        print(f"{r['threads']:>7} {r['call']:<32} {r['median_ms']:>9.2f} {r['p99_ms']:>7.2f}")
    print(f"tracks believed (existence > 0.5): {rows[0]['tracks_believed']}")
    write_json(args.out, {
        "rows": rows, "weights": str(args.weights), "scenario": args.scenario, "config": stack.cfg.to_dict(),
        "machine": machine_info(),
    })  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
