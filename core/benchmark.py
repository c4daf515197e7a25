"""For bench/ scripts: latency of a call (median and p99 over repeats after a warm-up), and the machine it ran on."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch


def time_call(call: Callable[[], object], repeats: int, warmup: int = 3) -> dict[str, float]:
    """{"median_ms", "p99_ms"} of `call()` over `repeats` timed calls after `warmup` untimed ones
    (the allocator and kernel selection settle during the warm-up)."""
    if repeats < 1:
        raise ValueError(f"repeats: expected >= 1, got {repeats}")
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))]}


def machine_info() -> dict[str, object]:
    """The platform, CPU count and torch version, stored with every benchmark's JSON."""
    return {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__}
