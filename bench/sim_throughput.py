"""Simulator throughput: agent-steps/s and bird's-eye frames/s, beside highway-env.

Agent-steps count every agent slot in use (N = 32 per episode) times sim steps;
each timed step includes the ego update, IDM and MOBIL for all agents, collision
checks and every per-step metric. highway-env's `highway-fast-v0` (when the
`bench` extra is installed) is timed on the same machine and converted to the
same unit: (its vehicles, the ego included) x (simulation steps per policy step).

    python bench/sim_throughput.py --out docs/bench/sim_throughput.json
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

from core.config import Timing
from core.io import write_json
from sim.config import RasterConfig
from sim.metrics import EpisodeAccumulator
from sim.scenarios import build_batch, load_scenario, scenario_path
from sim.sensors import render_frame
from sim.step import EgoAction
from sim.step import step as sim_step

AGENTS = 32


def throughput_scenario():
    """Dense cruising traffic with exactly AGENTS vehicles per episode."""
    return load_scenario(scenario_path("cruising")).with_overrides({"traffic.vehicles": AGENTS, "traffic.cyclists": 0})


def time_steps(batch: int, steps: int, device: str) -> dict:
    scenario = throughput_scenario()
    state = build_batch(scenario, list(range(batch)), device=device, timing=Timing())
    agents = int(state.agents.valid.sum())
    action = EgoAction(accel=torch.zeros(batch, device=device), steer=torch.zeros(batch, device=device))
    acc = EpisodeAccumulator.init(state)
    for _ in range(3):  # warm-up: allocator, first-call overheads
        nxt = sim_step(state, action)
        acc = acc.update(state, nxt)
        state = nxt
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        nxt = sim_step(state, action)
        acc = acc.update(state, nxt)
        state = nxt
    _sync(device)
    elapsed = time.perf_counter() - start
    return {
        "batch": batch,
        "agents_per_episode": agents / batch,
        "steps": steps,
        "seconds": elapsed,
        "agent_steps_per_s": agents * steps / elapsed,
        "ms_per_step": 1e3 * elapsed / steps,
    }


def time_frames(batch: int, repeats: int, device: str) -> dict:
    state = build_batch(throughput_scenario(), list(range(batch)), device=device, timing=Timing())
    raster = RasterConfig(size=128)
    render_frame(state, raster)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        render_frame(state, raster)
    _sync(device)
    elapsed = time.perf_counter() - start
    return {"batch": batch, "size": raster.size, "frames_per_s": batch * repeats / elapsed}


def time_highway_env(policy_steps: int) -> dict | None:
    try:
        import gymnasium as gym
        import highway_env  # noqa: F401 - registers the environments
    except ImportError:
        return None
    env = gym.make("highway-fast-v0")
    env.reset(seed=0)
    cfg = env.unwrapped.config
    sim_per_policy = int(cfg["simulation_frequency"] // cfg["policy_frequency"])
    agent_steps, done_steps = 0, 0
    start = time.perf_counter()
    while done_steps < policy_steps:
        vehicles = len(env.unwrapped.road.vehicles)
        _, _, terminated, truncated, _ = env.step(1)  # IDLE
        agent_steps += vehicles * sim_per_policy
        done_steps += 1
        if terminated or truncated:
            env.reset(seed=done_steps)
    elapsed = time.perf_counter() - start
    return {
        "env": "highway-fast-v0",
        "policy_steps": policy_steps,
        "sim_steps_per_policy_step": sim_per_policy,
        "seconds": elapsed,
        "agent_steps_per_s": agent_steps / elapsed,
    }


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--frame-batch", type=int, default=256)
    parser.add_argument("--highway-steps", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("docs/bench/sim_throughput.json"))
    args = parser.parse_args()

    steps = [time_steps(b, args.steps, args.device) for b in args.batches]
    frames = time_frames(args.frame_batch, 5, args.device)
    highway = time_highway_env(args.highway_steps)
    print(f"{'B':>6} {'agents/ep':>9} {'ms/step':>9} {'agent-steps/s':>14}")
    for r in steps:
        print(
            f"{r['batch']:>6} {r['agents_per_episode']:>9.1f} {r['ms_per_step']:>9.2f} {r['agent_steps_per_s']:>14,.0f}"
        )
    print(f"bird's-eye frames/s (128x128, B={frames['batch']}): {frames['frames_per_s']:,.0f}")
    result = {
        "machine": {
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "device": args.device,
        },
        "date": time.strftime("%Y-%m-%d"),
        "steps": steps,
        "frames": frames,
        "highway_env": highway,
    }
    if highway is not None:
        ratio = steps[-1]["agent_steps_per_s"] / highway["agent_steps_per_s"]
        result["ratio_vs_highway_env"] = ratio
        print(
            f"highway-fast-v0: {highway['agent_steps_per_s']:,.0f} agent-steps/s; "
            f"ratio at B={steps[-1]['batch']}: {ratio:,.0f}x"
        )
    else:
        print("highway-env not installed (pip install -e '.[bench]'): no side-by-side number")
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
