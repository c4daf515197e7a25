"""The latency helper of the bench scripts."""

from __future__ import annotations

import pytest

from core.benchmark import time_call


def test_time_call_counts_warmup_and_timed_calls_and_orders_its_statistics():
    calls = []
    result = time_call(lambda: calls.append(1), repeats=7, warmup=2)
    assert len(calls) == 9
    assert set(result) == {"median_ms", "p99_ms"} and 0 <= result["median_ms"] <= result["p99_ms"]


def test_time_call_rejects_no_repeats():
    with pytest.raises(ValueError, match="repeats"):
        time_call(lambda: None, repeats=0)
