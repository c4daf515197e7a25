"""Composite score, per-family summary and the atomic writers."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from sim.metrics import composite_score
from sim.metrics.table import format_table, summarize, write_episodes_csv, write_summary_csv, write_summary_json
from tests.sim.metric_worlds import accumulate, drive, world


def results(**overrides):
    base = {
        "at_fault_vehicle": 0,
        "at_fault_pedestrian": 0,
        "at_fault_cyclist": 0,
        "at_fault_static": 0,
        "drivable_area_compliance": True,
        "making_progress": True,
        "ttc_within_bound": True,
        "progress_ratio": 1.0,
        "speed_limit_compliance": 1.0,
        "comfortable": True,
    }
    base.update(overrides)
    return {k: torch.tensor([v]) for k, v in base.items()}


def test_score_example_without_collisions():
    r = results(progress_ratio=0.8, speed_limit_compliance=0.9, comfortable=False)
    # (5 * 1 + 5 * 0.8 + 4 * 0.9 + 2 * 0) / 16
    assert math.isclose(float(composite_score(r)), 12.6 / 16, rel_tol=1e-6)


def test_score_example_with_one_static_collision():
    r = results(at_fault_static=1, ttc_within_bound=False, progress_ratio=1.3)
    # 0.5 * (5 * 0 + 5 * min(1.3, 1) + 4 * 1 + 2 * 1) / 16
    assert math.isclose(float(composite_score(r)), 0.5 * 11 / 16, rel_tol=1e-6)


@pytest.mark.parametrize(
    "override",
    [
        {"at_fault_vehicle": 1},
        {"at_fault_pedestrian": 1},
        {"at_fault_cyclist": 2},
        {"at_fault_static": 2},
        {"drivable_area_compliance": False},
        {"making_progress": False},
    ],
)
def test_multipliers_zero_the_score(override):
    assert float(composite_score(results(**override))) == 0.0


def test_score_names_a_missing_result():
    r = results()
    del r["comfortable"]
    with pytest.raises(KeyError, match="comfortable"):
        composite_score(r)


def test_score_of_a_clean_simulated_episode():
    r = accumulate(drive(world(), [0.0] * 30, speed=13.0))  # under the limit, nothing around
    expected = (5 + 5 * min(1.0, float(r["progress_ratio"])) + 4 + 2) / 16
    assert math.isclose(float(composite_score(r)), expected, rel_tol=1e-5)
    assert float(r["progress_ratio"]) == pytest.approx(13.0 / 13.9, rel=1e-4)


# -- summary ----------------------------------------------------------------------


def record(family, seed, *, score=1.0, collisions=0, progress=100.0, ttc=5.0, error=None):
    metrics = (
        {}
        if error
        else {
            "score": score,
            "at_fault_collisions": float(collisions),
            "collided": float(collisions > 0),
            "min_ttc": ttc,
            "ttc_within_bound": float(ttc >= 0.95),
            "drivable_area_compliance": 1.0,
            "progress": progress,
            "progress_ratio": progress / 100.0,
            "speed_limit_compliance": 1.0,
            "comfortable": 1.0,
            "frozen_fraction": 0.25,
        }
    )
    return {"scenario": f"{family}_1", "family": family, "seed": seed, "metrics": metrics, "error": error}


RECORDS = [
    record("merge", 0, score=0.5, collisions=1, progress=50.0, ttc=0.0),
    record("merge", 1, score=1.0, progress=150.0, ttc=4.0),
    record("merge", 2, error="RuntimeError: policy crashed"),
    record("crossing", 0, score=0.8, progress=200.0, ttc=2.0),
]


def test_summary_per_family_and_overall_excludes_failed_from_means():
    s = summarize(RECORDS)
    assert [row["family"] for row in s["families"]] == ["crossing", "merge"]
    merge = s["families"][1]
    assert merge["episodes"] == 3 and merge["failed"] == 1
    assert merge["score_mean"] == pytest.approx(0.75)
    assert merge["at_fault_collision_rate_pct"] == pytest.approx(50.0)
    assert merge["at_fault_collisions_per_km"] == pytest.approx(1 / 0.2)
    assert merge["mean_min_ttc_s"] == pytest.approx(2.0)
    assert merge["ttc_within_bound_pct"] == pytest.approx(50.0)
    assert merge["mean_progress_m"] == pytest.approx(100.0)
    assert merge["frozen_pct"] == pytest.approx(25.0)
    overall = s["overall"]
    assert overall["family"] == "all" and overall["episodes"] == 4 and overall["failed"] == 1
    assert overall["score_mean"] == pytest.approx((0.5 + 1.0 + 0.8) / 3)
    assert overall["at_fault_collisions_per_km"] == pytest.approx(1 / 0.4)


def test_summary_of_only_failed_episodes_has_no_means():
    s = summarize([record("merge", 0, error="boom")])
    row = s["overall"]
    assert row["episodes"] == 1 and row["failed"] == 1
    assert row["score_mean"] is None and row["at_fault_collisions_per_km"] is None
    assert "-" in format_table(s)


def test_summary_rejects_a_successful_record_without_metrics():
    bad = record("merge", 0)
    del bad["metrics"]["score"]
    with pytest.raises(ValueError, match="'score'"):
        summarize([bad])


def test_format_table_lists_families_then_overall():
    text = format_table(summarize(RECORDS))
    lines = text.splitlines()
    assert lines[0].split()[0] == "family"
    assert lines[2].startswith("crossing") and lines[3].startswith("merge") and lines[-1].startswith("all")
    assert len({len(line) for line in lines}) == 1  # aligned


# -- writers ------------------------------------------------------------------------


def test_episodes_csv_keeps_failed_episodes(tmp_path):
    path = tmp_path / "episodes.csv"
    write_episodes_csv(RECORDS, path)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 4
    assert rows[2]["error"] == "RuntimeError: policy crashed" and rows[2]["score"] == ""
    assert float(rows[0]["score"]) == 0.5 and rows[0]["error"] == ""


def test_summary_json_and_csv_round_trip(tmp_path):
    s = summarize(RECORDS + [record("solo", 0, error="x")])
    write_summary_json({"config": {"suite": "t"}, **s}, tmp_path / "summary.json")
    loaded = json.loads((tmp_path / "summary.json").read_text())
    assert loaded["overall"]["episodes"] == 5 and loaded["config"]["suite"] == "t"
    assert loaded["families"][-1]["score_mean"] is None
    write_summary_csv(s, tmp_path / "summary.csv")
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [r["family"] for r in rows] == ["crossing", "merge", "solo", "all"]


def test_failed_writes_leave_the_previous_file_intact(tmp_path):
    json_path, csv_path = tmp_path / "summary.json", tmp_path / "episodes.csv"
    write_summary_json({"ok": 1}, json_path)
    write_episodes_csv(RECORDS, csv_path)
    before_json, before_csv = json_path.read_bytes(), csv_path.read_bytes()
    with pytest.raises(TypeError):
        write_summary_json({"ok": object()}, json_path)
    bad = record("merge", 9)
    bad["metrics"]["score"] = object()
    with pytest.raises(TypeError, match="column 'score'"):
        write_episodes_csv(RECORDS + [bad], csv_path)
    assert json_path.read_bytes() == before_json and csv_path.read_bytes() == before_csv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episodes.csv", "summary.json"]  # no temp files left


def test_non_finite_numbers_become_null_in_json(tmp_path):
    write_summary_json({"a": float("nan"), "b": [float("inf"), 1.0]}, tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": None, "b": [None, 1.0]}


def test_a_failure_while_replacing_removes_the_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    write_summary_json({"v": 1}, path)

    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("core.io.os.replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_summary_json({"v": 2}, path)
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
