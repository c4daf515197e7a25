"""Reading drive logs: pretraining frames per second and log size per drive, the input side of training.

Records `--drives` cut_in drives (12 s, the expert `pdm-gt`) unless `--logs` holds some, then reads them the
way pretraining does: `perception.logdata.LogFrameDataset` items (the detector input of frame t from frames
t-K+1 .. t, and frame t+1), drawn in a seeded random order, each followed by its temporal partner (the next
item) as the pretraining batches draw them. `--every 5 --stored-half` reads as the perception jobs do (every
5th frame, inputs rounded through float16); the default, every frame in float32, as `fleet train` did when
the log format was measured. Also reports whole-drive decoding (`read_drive`, every message) and the bytes
per drive. One thread. Prints a table, writes JSON.

    python bench/log_reading.py --out docs/bench/log_reading.json
    python bench/log_reading.py --every 5 --stored-half --out docs/bench/log_reading_jobs.json
    python bench/log_reading.py --every 5 --stored-half --workers 2 --out docs/bench/log_reading_jobs_w2.json
"""

# ruff: noqa: E402  (the package imports must follow the sys.path fix below)
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch

from core.benchmark import machine_info
from core.io import write_json
from perception.config import DetectorConfig
from perception.jobs.loader import BatchLoader
from perception.logdata import LogFrameDataset
from sim.drivelogs.format import read_drive
from sim.drivelogs.index import build_index
from sim.drivelogs.recorder import record_drives
from sim.policies import make_policy
from sim.scenarios import load_scenario, scenario_path


def pretraining_frames_per_s(
    logs: Path, items: int, seed: int, every: int = 1, stored_half: bool = False, workers: int = 0
) -> float:
    """Items per second of a fresh `LogFrameDataset` over every drive in `logs` (its cache starts empty); with
    `workers`, read as the jobs' `BatchLoader` reads ahead: batches of 16 items and their partners."""
    index = build_index(logs, save=False)
    detector = DetectorConfig()
    dataset = LogFrameDataset(index, index.drives, detector.frames, detector.raster, detector.warp_mode,
                              every=every, stored_half=stored_half)  # fmt: skip
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    draws = [i for first in order[: items // 2] for i in (first, min(first + 1, len(dataset) - 1))]
    if workers == 0:
        start = time.perf_counter()
        for i in draws:
            dataset[i]
        return len(draws) / (time.perf_counter() - start)
    batches = [torch.tensor(draws[b : b + 32]) for b in range(0, len(draws), 32)]
    loader = BatchLoader(dataset, workers)
    loader.plan(lambda step: batches[step], len(batches))
    try:
        loader.load(0, batches[0], "cpu")  # the workers' start-up (spawned, importing torch) is not reading
        start = time.perf_counter()
        for step in range(1, len(batches)):
            loader.load(step, batches[step], "cpu")
        return sum(len(b) for b in batches[1:]) / (time.perf_counter() - start)
    finally:
        loader.close()


def decode_messages_per_s(paths: list[Path]) -> float:
    start, messages = time.perf_counter(), 0
    for path in paths:
        messages += sum(1 for _ in read_drive(path))
    return messages / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, help="a log folder to read (default: record into a temporary one)")
    parser.add_argument("--drives", type=int, default=4, help="cut_in drives to record (default 4)")
    parser.add_argument("--items", type=int, default=800, help="pretraining items to read (default 800)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=1, help="one frame in N is an item (the jobs: 5)")
    parser.add_argument("--stored-half", action="store_true", help="inputs rounded through float16 (the jobs)")
    parser.add_argument("--workers", type=int, default=0, help="read ahead in this many processes (the jobs' "
                        "--workers)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("docs/bench/log_reading.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        logs = args.logs or Path(tmp) / "logs"
        if args.logs is None:
            record_drives(load_scenario(scenario_path("cut_in")), list(range(args.drives)), make_policy("pdm-gt"), logs)
        paths = sorted(logs.glob("*.mcap"))
        result = {
            "drives": len(paths),
            "bytes_per_drive": sum(p.stat().st_size for p in paths) / len(paths),
            "pretraining_frames_per_s": pretraining_frames_per_s(logs, args.items, args.seed, args.every,
                                                                 args.stored_half, args.workers),
            "decoded_messages_per_s": decode_messages_per_s(paths),
        }
    print(f"{'drives':>6} {'MB per drive':>12} {'pretraining frames/s':>20} {'decoded messages/s':>18}")
    print(f"{result['drives']:>6} {result['bytes_per_drive'] / 1e6:>12.2f} {result['pretraining_frames_per_s']:>20.1f} "
          f"{result['decoded_messages_per_s']:>18.1f}")  # fmt: skip
    write_json(args.out, {**result, "items": args.items, "seed": args.seed, "every": args.every,
                          "stored_half": args.stored_half, "workers": args.workers, "threads": 1,
                          "machine": machine_info()})  # fmt: skip
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
