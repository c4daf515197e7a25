"""Closed-loop runner, suite job and `drivestack sim` command."""

from __future__ import annotations

import csv
import dataclasses
import json
from typing import ClassVar

import pytest
import torch
import yaml

from sim.policies import Observation, PolicyOutput, make_policy, policy_names, register_policy
from sim.policies.idm import IDMPolicy
from sim.runner import rollout
from sim.scenarios import build_batch, load_scenario, scenario_path
from sim.suite import SuiteConfig, run_suite
from stack.cli import main as cli_main


def short(name: str, seconds: float = 2.0):
    return load_scenario(scenario_path(name)).with_overrides({"duration": seconds})


class NaNForOddEpisodes(IDMPolicy):
    """Returns NaN plans for odd batch rows: a policy that breaks on some episodes."""

    name: ClassVar[str] = "nan-odd"

    def act(self, state, obs: Observation):
        out, state = super().act(state, obs)
        traj = out.trajectory.clone()
        traj[1::2] = float("nan")
        return PolicyOutput(trajectory=traj, speeds=out.speeds, overlay=out.overlay), state


class RaisesOnSecondEpisode(IDMPolicy):
    """Raises in any batch of several episodes and in the second single-episode run:
    with seeds run in order, that is seed 1 once the runner isolates episodes."""

    name: ClassVar[str] = "raises"
    single_runs: ClassVar[int] = 0

    def initial_state(self, batch, device):
        if batch == 1:
            type(self).single_runs += 1
        return batch

    def act(self, state, obs: Observation):
        if state > 1 or type(self).single_runs == 2:
            raise RuntimeError("policy crashed")
        out, _ = super().act(None, obs)
        return out, state


def test_rollout_isolates_non_finite_plans():
    state = build_batch(short("cruising"), [0, 1, 2, 3])
    _, results, errors = rollout(state, NaNForOddEpisodes(), 10)
    assert errors[0] is None and errors[2] is None
    assert "non-finite" in errors[1] and "non-finite" in errors[3]
    assert torch.isfinite(results["score"][[0, 2]]).all()


def test_rollout_progresses_and_scores_in_unit_range():
    state = build_batch(short("cruising", 3.0), [0, 1])
    final, results, errors = rollout(state, make_policy("idm-gt"), 30)
    assert errors == [None, None]
    assert (final.ego.progress > 5.0).all()
    assert ((results["score"] >= 0) & (results["score"] <= 1)).all()


def test_suite_writes_results_and_video(tmp_path):
    scenario_file = tmp_path / "tiny.yaml"
    doc = yaml.safe_load(scenario_path("lead_brake").read_text())
    doc["duration"] = 1.5
    scenario_file.write_text(yaml.safe_dump(doc))
    cfg = SuiteConfig(
        suite=str(scenario_file),
        policy="pdm",
        seeds=3,
        batch_size=2,
        out=tmp_path / "out",
        render=1,
        video_format="gif",
    )
    results = run_suite(cfg)
    assert len(results) == 3 and all(r.error is None for r in results)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["overall"]["episodes"] == 3
    rows = list(csv.DictReader((tmp_path / "out" / "episodes.csv").open()))
    assert [int(r["seed"]) for r in rows] == [0, 1, 2]
    videos = list((tmp_path / "out" / "videos").glob("*.gif"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000
    # Chosen episodes render too, in their own batches, and drive exactly as without rendering.
    chosen = dataclasses.replace(cfg, render=0, render_seeds=(("lead_brake", 2),), out=tmp_path / "chosen")
    again = run_suite(chosen)
    assert [p.name for p in (tmp_path / "chosen" / "videos").glob("*.gif")] == ["lead_brake_seed2.gif"]
    assert [r.metrics for r in again] == [r.metrics for r in results]


def test_suite_keeps_other_episodes_when_one_raises(tmp_path):
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text(yaml.safe_dump(short("cruising", 1.0).document))
    register_policy("raises", RaisesOnSecondEpisode)
    results = run_suite(
        SuiteConfig(suite=str(scenario_file), policy="raises", seeds=3, batch_size=3, out=tmp_path / "out")
    )
    errors = {r.seed: r.error for r in results}
    assert errors[0] is None and errors[2] is None
    assert "policy crashed" in errors[1]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["overall"]["failed"] == 1


def test_cli_lists_sim_and_rejects_unknown_names(capsys, tmp_path):
    with pytest.raises(SystemExit):
        cli_main(["--help"])
    assert "sim" in capsys.readouterr().out
    assert cli_main(["sim", "--suite", "no-such-suite", "--policy", "pdm", "--out", str(tmp_path)]) == 2
    assert "no-such-suite" in capsys.readouterr().err
    assert cli_main(["sim", "--suite", "hard", "--policy", "no-such-policy", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no-such-policy" in err and "pdm" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is missing")
def test_cuda_device_without_cuda_is_a_clear_error(capsys, tmp_path):
    assert cli_main(["sim", "--suite", "hard", "--policy", "pdm", "--device", "cuda", "--out", str(tmp_path)]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_registry_names_baselines():
    assert {"idm", "idm-gt", "pdm", "pdm-gt"} <= set(policy_names())
