"""Closed-loop evaluation: runs, resume, targets and the report, with a tiny stack on a short scenario."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from perception.model import PerceptionConfig
from sim.config import RasterConfig
from sim.journal import RunInterrupted
from sim.scenarios import scenario_path
from stack.bootstrap import PAIRS
from stack.config import StackConfig
from stack.evaluate import DIAGNOSTICS, ClosedLoopConfig, Run, evaluate, planned_runs, sweep_checks, targets
from stack.model import Stack
from stack.report import write_report

RASTER = RasterConfig(size=32, resolution=1.0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("closed-loop")
    scenario = base / "short_crossing.yaml"
    text = scenario_path("crosswalk_crowd").read_text()
    lines = [("duration: 1.5" if line.startswith("duration:") else line) for line in text.splitlines()]
    scenario.write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    weights = Stack(StackConfig.tiny(perception=PerceptionConfig.tiny(RASTER))).save(base / "stack.safetensors")
    cfg = ClosedLoopConfig(
        suite=str(scenario), seeds=2, weights=weights, sigmas=(0.0, 1.0), baselines=(), diagnostics=(),
        batch_size=2, render=1, out=base / "out",
    )  # fmt: skip
    return cfg, evaluate(cfg)


@pytest.fixture(scope="module")
def every_row(setup):
    """The baselines and the diagnostics beside the stack, on the same episodes."""
    cfg, _ = setup
    cfg = dataclasses.replace(cfg, sigmas=(), baselines=("pdm", "pdm-gt"), diagnostics=DIAGNOSTICS, render=0,
                              out=cfg.out.parent / "every-row")  # fmt: skip
    return cfg, evaluate(cfg)


def test_every_run_is_on_the_same_episodes_and_reported(setup):
    cfg, comparison = setup
    assert set(comparison["overall"]) == {"stack", "stack-argmax", "stack-sigma=0"}
    assert all(row["episodes"] == 2 and row["failed"] == 0 for row in comparison["overall"].values())
    assert [r["sigma"] for r in comparison["sweep"]] == [0.0, 1.0]
    assert set(comparison["targets"]) == {
        "score_at_least_0.80",
        "collision_rate_at_most_half_of_ablation",
        "progress_at_least_90pct_of_ablation",
        "frozen_at_most_2pct",
    }
    saved = json.loads((cfg.out / "comparison.json").read_text())
    assert saved["sweep"] == comparison["sweep"]


def test_a_finished_run_is_reused_not_rerun(setup):
    cfg, comparison = setup
    stamp = (cfg.out / "stack" / "summary.json").stat().st_mtime_ns
    again = evaluate(cfg)
    assert (cfg.out / "stack" / "summary.json").stat().st_mtime_ns == stamp
    assert again["overall"] == comparison["overall"]


def test_the_report_has_tables_plots_and_a_rendered_episode(setup):
    cfg, comparison = setup
    report = write_report(comparison, cfg.out)
    text = report.read_text()
    assert "| stack |" in text and "| stack-argmax |" in text and "## Sigma sweep" in text
    for name in ("metrics.png", "sigma_tradeoff.png", "sigma_pareto.png", "episode.png"):
        assert (report.parent / name).stat().st_size > 1000
    assert "stack minus stack-sigma=0: at-fault collisions" in text and "frozen onset sigma" in text


def test_the_sweep_is_judged_step_by_step_on_paired_episodes(setup):
    _, comparison = setup
    (step,) = comparison["sweep_steps"]  # two sigmas: one step
    assert (step["reference"], step["row"]) == ("stack-sigma=0", "stack")
    progress = step["progress_m"]
    assert progress["episodes"] == 2 and progress["low"] <= progress["mean"] <= progress["high"]
    assert set(comparison["sweep_checks"]) >= {"collisions_fall_by_a_third", "frozen_onset_sigma"}


def test_diagnostics_and_baselines_drive_the_same_episodes_with_paired_intervals(every_row):
    cfg, comparison = every_row
    assert list(comparison["overall"]) == ["stack", "stack-argmax", "pdm", "pdm-gt", *DIAGNOSTICS]
    assert all(row["episodes"] == 2 and row["failed"] == 0 for row in comparison["overall"].values())
    seeds = {label: sorted(r["seed"] for r in csv.DictReader((cfg.out / label / "episodes.csv").open()))
             for label in comparison["overall"]}  # fmt: skip
    assert len({tuple(v) for v in seeds.values()}) == 1
    assert list(comparison["bootstrap"]) == [f"{row}-{ref}" for row, ref in PAIRS]
    pdm = comparison["bootstrap"]["stack-pdm"]["score"]
    assert pdm["episodes"] == 2 and pdm["low"] <= pdm["mean"] <= pdm["high"]
    assert "planner_on_ground_truth_at_least_pdm_gt" in comparison["targets"]
    text = write_report(comparison, cfg.out).read_text()
    assert "## Per family" in text and "| pdm-stack |" in text
    assert "stack-pdm: score" in text and "stack-objects-pdm: score" in text


def test_targets_compare_with_the_ablation_the_baselines_and_feasible_families():
    def row(collision, progress, frozen, score=0.5, families=()):
        overall = {"at_fault_collision_rate_pct": collision, "mean_progress_m": progress, "frozen_pct": frozen,
                   "score_mean": score}  # fmt: skip
        return {"overall": overall,
                "families": [{"family": f, "at_fault_collision_rate_pct": c} for f, c in families]}  # fmt: skip

    stack = row(4.0, 95.0, 1.0, 0.82, (("a", 10.0), ("b", 40.0)))
    reference = row(1.0, 0, 0, 0.9, (("a", 0.0), ("b", 20.0)))
    checks = targets({"stack": stack, "stack-argmax": row(10.0, 100.0, 0.0), "pdm": row(5.0, 0, 0, 0.6),
                      "pdm-gt": reference, "stack-gt": row(0, 0, 0, 0.85)})  # fmt: skip
    assert checks["collision_rate_at_most_half_of_ablation"]["met"]
    assert checks["progress_at_least_90pct_of_ablation"]["met"]
    assert checks["frozen_at_most_2pct"]["met"] and checks["score_at_least_0.80"]["met"]
    assert checks["score_at_least_pdm_plus_0.03"]["met"] and checks["collisions_at_most_pdm"]["met"]
    # Family b is not feasible for pdm-gt (20 %), so only family a's 10 % counts.
    assert checks["worst_feasible_family_collisions_at_most_15pct"]["value"] == 10.0
    assert checks["planner_on_ground_truth_at_least_pdm_gt"]["met"] is False


def test_sweep_checks_name_the_steps_that_rise_and_where_the_robot_freezes():
    def sweep_row(sigma, collision, progress, frozen):
        return {"sigma": sigma, "label": f"s{sigma:g}", "collision_rate_pct": collision, "progress_m": progress,
                "frozen_pct": frozen}  # fmt: skip

    def step(ref, row, collision_low, progress_low):
        return {"reference": ref, "row": row, "collision_pct": {"low": collision_low},
                "progress_m": {"low": progress_low}}  # fmt: skip

    sweep = [sweep_row(-1, 30.0, 100.0, 0.0), sweep_row(2, 25.0, 90.0, 1.5), sweep_row(20, 15.0, 60.0, 9.0)]
    steps = [step("s-1", "s2", -5.0, -3.0), step("s2", "s20", 0.5, -20.0), step("s-1", "s20", -20.0, -40.0)]
    checks = sweep_checks(sweep, steps)
    assert checks["collisions_fall_by_a_third"]["met"] and checks["progress_falls"]["met"]
    assert checks["collisions_monotone_within_noise"] == {"met": False, "rises": ["s2->s20"]}
    assert checks["progress_monotone_within_noise"]["met"]
    assert checks["frozen_at_most_2pct_up_to_sigma_2"]["met"] and checks["frozen_onset_sigma"]["value"] == 20
    assert sweep_checks(sweep[:1], []) == {}


def test_planned_runs_put_the_main_sigma_once():
    runs = planned_runs(ClosedLoopConfig(sigmas=(0.0, 1.0, 2.0)), default_sigma=1.0)
    assert [r.label for r in runs] == ["stack", "stack-argmax", "pdm", "pdm-gt", *DIAGNOSTICS, "stack-sigma=0",
                                       "stack-sigma=2"]  # fmt: skip


def test_missing_weights_get_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"none\.safetensors: no such file"):
        evaluate(ClosedLoopConfig(weights=tmp_path / "none.safetensors", out=tmp_path))


class _InterruptedInSecondBatch:
    """A policy that behaves like `policy` until Ctrl-C is pressed at the start of its second batch."""

    def __init__(self, policy):
        self.policy, self.batches = policy, 0

    def __getattr__(self, name):
        return getattr(self.policy, name)

    def initial_state(self, batch, device):
        self.batches += 1
        return self.policy.initial_state(batch, device)

    def act(self, state, obs):
        if self.batches == 2:
            raise KeyboardInterrupt
        return self.policy.act(state, obs)


def test_an_interrupted_evaluation_goes_on_from_the_last_finished_batch(setup, monkeypatch):
    cfg, _ = setup
    cfg = dataclasses.replace(cfg, batch_size=1, render=0, sigmas=(), out=cfg.out.parent / "interrupted")
    straight = evaluate(dataclasses.replace(cfg, out=cfg.out.parent / "straight"))
    build = Run.policy
    monkeypatch.setattr(Run, "policy", lambda run, *a: _wrap(run, build(run, *a)))
    with pytest.raises(RunInterrupted, match="interrupted in run stack-argmax: .*run the same command again"):
        evaluate(cfg)
    assert (cfg.out / "stack-argmax" / "episodes.jsonl").read_text().count("\n") == 2  # the header and one batch
    monkeypatch.setattr(Run, "policy", build)
    again = evaluate(cfg)
    assert again["overall"] == straight["overall"]
    for name in ("episodes.csv", "episodes.jsonl"):
        assert (cfg.out / "stack-argmax" / name).read_bytes() == (
            cfg.out.parent / "straight" / "stack-argmax" / name
        ).read_bytes()


def _wrap(run, policy):
    return _InterruptedInSecondBatch(policy) if run.label == "stack-argmax" else policy
