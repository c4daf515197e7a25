"""A suite run under torchrun: ranks simulate disjoint whole batches and rank 0 writes exactly what one
process writes (episodes.csv, the journal, the summaries), byte for byte."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import ConfigError
from sim import shards
from sim.runner import EpisodeResult
from sim.scenarios import resolve_suite
from sim.scenarios.loader import scenario_path

OUTPUTS = ("episodes.csv", "episodes.jsonl", "summary.csv")


def _short_suite(folder: Path) -> Path:
    """Two packaged scenarios cut to 1.5 s, so a run of a few episodes takes seconds."""
    folder.mkdir()
    for name in ("cut_in", "lead_brake"):
        text = re.sub(r"^duration: .*$", "duration: 1.5", scenario_path(name).read_text(), flags=re.M)
        (folder / f"{name}.yaml").write_text(text)
    suite = folder / "short.yaml"
    suite.write_text("name: short\ndescription: two short scenarios\nscenarios: [cut_in.yaml, lead_brake.yaml]\n")
    return suite


def _drivestack(processes: int, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same threads in both runs (torchrun's default)
    env.pop("WORLD_SIZE", None)
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]  # fmt: skip
    done = subprocess.run([*launcher, "-m", "stack.cli", *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _sim(out: Path, suite: Path, processes: int, *args: str) -> None:
    _drivestack(processes, "sim", "--suite", str(suite), "--policy", "pdm", "--seeds", "3", "--first-seed", "6000",
                "--batch-size", "2", "--out", str(out), *args)  # fmt: skip


@pytest.mark.slow
def test_two_processes_write_what_one_process_writes(tmp_path):
    suite = _short_suite(tmp_path / "suite")
    _sim(tmp_path / "one", suite, 1)
    _sim(tmp_path / "two", suite, 2)
    for name in OUTPUTS:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    assert not (tmp_path / "two" / shards.RANKS).exists()
    # Resumed after it finished: nothing is simulated again, the outputs are the same.
    _sim(tmp_path / "two", suite, 2, "--resume")
    for name in OUTPUTS:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name


@pytest.mark.slow
def test_stack_evaluate_under_two_processes_runs_the_same_episodes(tmp_path):
    suite = _short_suite(tmp_path / "suite")
    for processes, out in ((1, tmp_path / "one"), (2, tmp_path / "two")):
        _drivestack(processes, "stack", "evaluate", "--suite", str(suite), "--seeds", "2", "--first-seed", "6000",
                    "--batch-size", "1", "--sigmas", "--baselines", "--diagnostics", "--out", str(out))  # fmt: skip
    for run in ("stack", "stack-argmax"):
        for name in OUTPUTS:
            assert (tmp_path / "two" / run / name).read_bytes() == (tmp_path / "one" / run / name).read_bytes(), name
    one, two = (json.loads((tmp_path / o / "comparison.json").read_text()) for o in ("one", "two"))
    assert two["overall"] == one["overall"] and two["families"] == one["families"]


def test_the_shares_are_disjoint_whole_batches_covering_the_plan():
    scenario = resolve_suite("cut_in")[0]
    plan = [(scenario, [s, s + 1]) for s in range(0, 10, 2)]
    parts = [shards.share(plan, rank, 3) for rank in range(3)]
    keys = [shards.key(b) for part in parts for b in part]
    assert sorted(keys) == sorted(map(shards.key, plan)) and len(set(keys)) == len(plan)
    assert [len(p) for p in parts] == [2, 2, 1]


def test_merging_orders_the_batches_by_plan_and_names_a_missing_one():
    scenario = resolve_suite("cut_in")[0]
    plan = [(scenario, [0, 1]), (scenario, [2])]
    rows = [EpisodeResult("cut_in", "cut_in", seed, {"score": seed / 10}) for seed in (0, 1, 2)]
    first, second = shards.encode([("cut_in", (0, 1))], rows[:2]), shards.encode([("cut_in", (2,))], rows[2:])
    merged = shards.merge([second, first], plan)
    assert [row for batch in merged.values() for row in batch] == rows
    with pytest.raises(ConfigError, match="1 planned batches came back from no rank, e.g. \\('cut_in', \\(2,\\)\\)"):
        shards.merge([first], plan)
