"""Tracker accuracy on held-out simulated episodes: position RMSE, NEES, recall and identity switches.

Two sources of detections, the same soft-association Kalman tracker:

* `object-sensor`: the simulator's noisy object list (position jitter, misses,
  ghosts) turned into `Detections` with the sensor's own jitter as covariance;
  this isolates the tracker;
* `--model PATH`: the whole perception chain (`Perception.step`: the trained
  detector on the BEV frames, then the tracker), what the stack runs.

Episodes are driven by `pdm-gt` on held-out seeds; ground truth comes from
`sim.sensors.ground_truth`. Matching (`perception.track_metrics`) keeps a pair
while it stays within `--gate` and assigns the rest by the Hungarian method;
tracks count once their existence reaches 0.5. The first `--warmup` steps are
not scored (tracks are being born). NEES has expectation 2 (position) and 4
(position + velocity) for a consistent filter.

    python bench/tracker.py                                   # object sensor, writes docs/bench/tracker.json
    python bench/tracker.py --model weights/perception.safetensors --out docs/bench/tracker_detector.json
"""

# ruff: noqa: E402  (the package imports must follow the sys.path fix below)
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from core.benchmark import machine_info
from core.config import Timing
from core.io import write_json
from perception.model import Perception
from perception.objects import detections_from_objects
from perception.track_metrics import match_tracks, summarize
from perception.tracking import Tracker, TrackerConfig
from perception.types import Detections
from sim.config import RasterConfig
from sim.policies import make_policy
from sim.runner import rollout
from sim.scenarios import build_batch, episode_steps, load_scenario, scenario_path
from sim.sensors import detect_objects, ground_truth

SCENARIOS = ("cruising", "cut_in", "crosswalk_crowd")


def object_sensor_detections(world, raster: RasterConfig) -> Detections:
    """The simulator's noisy object list as `Detections`, the sensor's own jitter as the position std."""
    jitter = float(world.sensor.position_jitter.max())
    return detections_from_objects(detect_objects(world, raster), jitter)


class ObjectSensorChain:
    """Tracker fed by the object sensor."""

    def __init__(self, slots: int):
        self.tracker = Tracker(TrackerConfig(slots=slots))
        self.raster = RasterConfig()

    def start(self, batch: int):
        return self.tracker.initial_state(batch)

    def step(self, state, world, frame):
        detections = object_sensor_detections(world, self.raster)
        return self.tracker.step(state, detections, frame.ego_pose, Timing().sim_dt)


class DetectorChain:
    """The perception chain: detector on the BEV frames, then the tracker."""

    def __init__(self, path: Path):
        self.model = Perception.load(path).eval()

    def start(self, batch: int):
        return None  # created from the first frame

    def step(self, state, world, frame):
        state = self.model.initial_state(frame) if state is None else state
        _, tracks, state = self.model.step(state, frame)
        return tracks, state


@torch.inference_mode()
def measure(chain, scenario: str, seeds: list[int], gate: float, warmup: int) -> dict:
    sc = load_scenario(scenario_path(scenario))
    world = build_batch(sc, seeds=seeds)
    run = {"state": chain.start(world.batch_size), "matches": [], "previous": None, "seconds": 0.0}

    def observer(world, obs, plan) -> None:
        started = time.perf_counter()
        tracks, run["state"] = chain.step(run["state"], world, obs.frame)
        run["seconds"] += time.perf_counter() - started
        match = match_tracks(tracks, ground_truth(world), previous=run["previous"], gate=gate)
        run["previous"] = match
        run["matches"].append(match)

    steps = episode_steps(sc)
    rollout(world, make_policy("pdm-gt"), steps, observer=observer)
    summary = summarize(run["matches"][warmup:])
    return {"scenario": scenario, "episodes": len(seeds), "steps": steps, "gate_m": gate, **vars(summary),
            "chain_ms_per_step": 1e3 * run["seconds"] / steps}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="perception model file (default: object sensor)")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), help="scenarios to drive")
    parser.add_argument("--seeds", type=int, default=8, help="episodes per scenario (default 8)")
    parser.add_argument("--first-seed", type=int, default=3000, help="first (held-out) seed (default 3000)")
    parser.add_argument("--gate", type=float, default=1.0, help="match gate, m (default 1)")
    parser.add_argument("--warmup", type=int, default=10, help="unscored first steps (default 10)")
    parser.add_argument("--slots", type=int, default=32, help="tracker slots for the object sensor (default 32)")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/tracker.json"), help="JSON results")
    args = parser.parse_args(argv)
    chain = DetectorChain(args.model) if args.model else ObjectSensorChain(args.slots)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    print(
        f"{'scenario':<16} {'RMSE m':>7} {'pos NEES':>8} {'state NEES':>10} {'recall':>6} {'ID sw':>5} {'ms/step':>7}"
    )
    rows = []
    for scenario in args.scenarios:
        r = measure(chain, scenario, seeds, args.gate, args.warmup)
        rows.append(r)
        cells = (r["position_rmse"], r["mean_position_nees"], r["mean_state_nees"], r["recall"], r["id_switches"],
                 r["chain_ms_per_step"])  # fmt: skip
        print(f"{scenario:<16} " + " ".join(f"{c:>10.3f}" for c in cells), flush=True)
    write_json(args.out, {
        "source": str(args.model) if args.model else "object-sensor", "rows": rows, "seeds": seeds,
        "machine": {**machine_info(), "threads": torch.get_num_threads()},
    })  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
