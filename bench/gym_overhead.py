"""What the Gymnasium interface costs over the raw simulator: `DrivestackVectorEnv.step` against the same
work done directly in torch, at B = 1, 64, 1024.

Raw step (what any closed loop does, `sim.runner.rollout` without its accumulator): the planned trajectory
through the tracking controller, `sim.step.step`, the reward's step metrics (`sim.gym.reward.StepReward`)
and the observation (`sim.runner.observe`: the sensor frame and the noisy detections), results left as
torch tensors. Environment step: the same, plus what Gymnasium asks for - the action checked and moved
from numpy, the observation, reward and ends turned into numpy, the infos built. The two run interleaved,
one step each in turn on the same episodes (seeds 0 .. B-1), so a busy machine slows both alike; the
median over the steps is reported. No episode ends inside the timed steps (a reset is timed apart).

On a shared machine the difference of two medians of steps that take seconds is noisy, so the interface's
own work is also timed directly, on the real batch: checking the action array and moving it to the
device (`sim.gym.spaces.check_actions`), and turning the observation and the step's outcome into numpy
(`sim.gym.host`). That is the overhead without the noise of the simulation around it.

    python bench/gym_overhead.py --out docs/bench/gym_overhead_cpu.json
    python bench/gym_overhead.py --device cuda --out docs/bench/gym_overhead_cuda.json
"""

# ruff: noqa: E402  (the package imports must follow the sys.path fix below)
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from core.benchmark import machine_info, time_call
from core.io import write_json
from sim.config import RasterConfig
from sim.controller import TrackingController, centre_plan_to_rear_axle
from sim.gym import DrivestackVectorEnv
from sim.gym.host import observation_arrays, outcome_arrays
from sim.gym.reward import StepReward
from sim.gym.spaces import check_actions
from sim.policies import Observation
from sim.runner import observe
from sim.scenarios import build_batch
from sim.state import WorldState
from sim.step import step as sim_step

PLAN_SPEED = 10.0  # m/s, a straight plan along the ego's heading


class _Reads:
    inputs = frozenset({"detections"})


def straight_plan(batch: int, horizon: int, sample_dt: float) -> np.ndarray:
    """[B, T, 2] box-centre positions, straight ahead at PLAN_SPEED."""
    ahead = PLAN_SPEED * sample_dt * np.arange(1, horizon + 1, dtype=np.float32)
    plan = np.stack((ahead, np.zeros_like(ahead)), axis=-1)
    return np.broadcast_to(plan, (batch, horizon, 2)).copy()


def timed_result(call):
    """(ms, result) of one call."""
    start = time.perf_counter()
    result = call()
    return 1e3 * (time.perf_counter() - start), result


def timed(call) -> float:
    return timed_result(call)[0]


def measure(batch: int, steps: int, scenario: str, device: str, raster: RasterConfig) -> dict:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    env = DrivestackVectorEnv(num_envs=batch, scenario=scenario, action="trajectory", device=device, raster=raster)
    block = env.blocks[0]
    if steps + 2 >= block.steps:
        raise SystemExit(f"--steps: at most {block.steps - 3} for {scenario} (no episode may end while timed)")
    timing = env.config.timing
    plan = straight_plan(batch, timing.horizon_steps, timing.sample_dt)
    plan_t = torch.from_numpy(plan).to(device)
    controller, reward = TrackingController(timing=timing), StepReward(env.config.reward, env.config.metrics)
    state = build_batch(block.scenario, list(range(batch)), device=device, timing=timing)

    def raw_step() -> None:
        nonlocal state
        action = controller(state.ego, centre_plan_to_rear_axle(plan_t, state.ego.wheelbase))
        nxt = sim_step(state, action)
        reward(state, nxt, block.steps)
        observe(nxt, _Reads(), raster)
        state = nxt
        sync()

    start = time.perf_counter()
    env.reset(seed=0)
    reset_ms = 1e3 * (time.perf_counter() - start)
    raw_ms, env_ms = [], []
    for k in range(steps + 2):  # the first two pairs warm up (allocator, first calls)
        # Alternate which of the pair runs first, so that neither is always the one after the other.
        first_raw = k % 2 == 0
        if first_raw:
            raw_time = timed(raw_step)
        env_time, (_, _, terminated, truncated, _) = timed_result(lambda: env.step(plan))
        if not first_raw:
            raw_time = timed(raw_step)
        if terminated.any() or truncated.any():
            raise SystemExit(f"an episode ended at step {k + 1} at B={batch}: choose fewer --steps")
        if k >= 2:
            raw_ms.append(raw_time)
            env_ms.append(env_time)
    raw, gym = statistics.median(raw_ms), statistics.median(env_ms)
    action = controller(state.ego, centre_plan_to_rear_axle(plan_t, state.ego.wheelbase))
    prev, state = state, sim_step(state, action)
    obs = observe(state, _Reads(), raster)
    interface = time_interface(env, plan, obs, state, reward(prev, state, block.steps))
    copy = time_observation_copy(obs, state)
    return {
        "batch": batch,
        "steps": steps,
        "raw_ms": raw,
        "env_ms": gym,
        "overhead_ms": gym - raw,
        "overhead_pct": 100.0 * (gym - raw) / raw,
        "raw_ms_all": raw_ms,
        "env_ms_all": env_ms,
        "interface_ms": interface,
        "interface_pct": 100.0 * interface / raw,
        "observation_copy_ms": copy,
        "reset_ms": reset_ms,
    }


def time_observation_copy(obs: Observation, state: WorldState) -> float:
    """Median ms of copying one step's numpy observation: what the environment saves by handing the
    sensor's arrays over without a copy on the CPU."""
    arrays = observation_arrays([obs], [state], {"detections": int(obs.detections.valid.shape[1])})

    def copy() -> None:
        {part: {name: array.copy() for name, array in fields.items()} for part, fields in arrays.items()}

    return time_call(copy, repeats=5, warmup=1)["median_ms"]


def time_interface(env: DrivestackVectorEnv, plan: np.ndarray, obs: Observation, state: WorldState, outcome) -> float:
    """Median ms of the environment's own work in one step, on a real observation and outcome."""
    slots = {"detections": int(obs.detections.valid.shape[1])}
    batch = env.num_envs
    judged = np.ones(batch, dtype=bool)

    def interface() -> None:
        checked = check_actions(plan, env.single_action_space, batch, "trajectory", ~judged)
        torch.from_numpy(checked).to(env.device)
        observation_arrays([obs], [state], slots)
        outcome_arrays([outcome], judged)

    return time_call(interface, repeats=20)["median_ms"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scenario", default="cut_in")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024])
    parser.add_argument("--steps", type=int, nargs="+", default=[60, 20, 8], help="timed steps per batch size")
    parser.add_argument("--raster", type=int, default=RasterConfig().size, help="raster cells per side")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/gym_overhead_cpu.json"))
    args = parser.parse_args(argv)
    if len(args.steps) != len(args.batches):
        parser.error("--steps: give one count per batch size")
    raster = RasterConfig(size=args.raster)
    rows = [measure(b, s, args.scenario, args.device, raster) for b, s in zip(args.batches, args.steps, strict=True)]
    head = f"{'B':>6} {'steps':>5} {'raw ms':>9} {'env ms':>9} {'env - raw':>9} {'%':>7} {'interface ms':>12} {'%':>7}"
    print(head + f" {'copy ms':>8} {'reset ms':>9}")
    for r in rows:
        print(
            f"{r['batch']:>6} {r['steps']:>5} {r['raw_ms']:>9.2f} {r['env_ms']:>9.2f} {r['overhead_ms']:>9.2f} "
            f"{r['overhead_pct']:>6.1f}% {r['interface_ms']:>12.3f} {r['interface_pct']:>6.2f}% "
            f"{r['observation_copy_ms']:>8.1f} {r['reset_ms']:>9.1f}"
        )
    result = {
        "scenario": args.scenario,
        "action": "trajectory",
        "inputs": ["detections"],
        "raster": args.raster,
        "device": args.device,
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_info(),
        "rows": rows,
    }
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
