"""Paired bootstrap intervals (exact means, intervals that shrink to the mean when every episode agrees,
failed episodes left out, only the pairs whose two rows ran) and the per-scenario table read from the same
episode files."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from stack.bootstrap import differences, episode_metrics, paired_interval
from stack.report import scenario_table


def _write_run(out: Path, label: str, rows: list[tuple[int, float, int, str]], scenario: str = "cruising") -> None:
    (out / label).mkdir(parents=True, exist_ok=True)
    path = out / label / "episodes.csv"
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(["scenario", "seed", "score", "collided", "progress", "error"])
        for seed, score, collided, error in rows:
            writer.writerow([scenario, seed, score, collided, 100.0 * score, error])  # progress: m


def test_the_mean_difference_is_exact_and_inside_its_interval():
    a = {("s", i): {"score": 0.1 * i, "collided": 0.0} for i in range(10)}
    b = {("s", i): {"score": 0.05 * i, "collided": float(i % 2)} for i in range(10)}
    score = paired_interval(a, b, "score")
    assert score["episodes"] == 10 and score["mean"] == pytest.approx(0.225)
    assert score["low"] < score["mean"] < score["high"]
    same = paired_interval(a, a, "score")
    assert same["mean"] == same["low"] == same["high"] == 0.0


def test_failed_episodes_and_missing_rows_are_left_out(tmp_path):
    _write_run(tmp_path, "stack", [(0, 0.9, 0, ""), (1, 0.8, 0, ""), (2, 0.0, 0, "RuntimeError: boom")])
    _write_run(tmp_path, "pdm", [(0, 0.7, 1, ""), (1, 0.6, 0, ""), (2, 0.5, 0, "")])
    assert set(episode_metrics(tmp_path / "stack" / "episodes.csv")) == {("cruising", 0), ("cruising", 1)}
    result = differences(tmp_path, ["stack", "pdm"])
    assert list(result) == ["stack-pdm"]
    assert result["stack-pdm"]["score"]["episodes"] == 2
    assert result["stack-pdm"]["score"]["mean"] == pytest.approx(0.2)
    assert result["stack-pdm"]["collision_pct"]["mean"] == pytest.approx(-50.0)
    assert result["stack-pdm"]["progress_m"]["mean"] == pytest.approx(20.0)


def test_scenarios_sharing_a_family_get_their_own_rows(tmp_path):
    _write_run(tmp_path, "stack", [(0, 0.9, 0, ""), (1, 0.5, 1, "")], scenario="crowd_eth")
    _write_run(tmp_path, "stack", [(0, 0.2, 1, "")], scenario="crowd_zara1")
    comparison = {"overall": {"stack": {}}, "families": {"stack": [{"family": "ethucy_crowd"}]}}
    table = scenario_table(comparison, tmp_path)
    assert "| crowd_eth | 0.70 / 50 |" in table and "| crowd_zara1 | 0.20 / 100 |" in table
    one_each = {"overall": {"stack": {}}, "families": {"stack": [{"family": "a"}, {"family": "b"}]}}
    assert scenario_table(one_each, tmp_path) is None
