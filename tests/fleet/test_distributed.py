"""Data-parallel training: two gloo processes take the steps one process takes with the combined batch,
and a job killed part-way and resumed ends where an uninterrupted one does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.checkpoint import load_checkpoint
from core.training import FINAL_NAME

JOB = Path(__file__).with_name("ddp_toy_job.py")


def _run(out: Path, *args: str, processes: int = 1) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    launcher = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]  # fmt: skip
    done = subprocess.run([*launcher, str(JOB), "--out", str(out), *args], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    if done.returncode != 0:
        (out.parent / f"{out.name}-stderr.txt").write_text(done.stderr)
    assert done.returncode == 0, done.stderr[-3000:]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(out / FINAL_NAME).tensors


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_combined_batch(tmp_path):
    _run(tmp_path / "one", "--batch-size", "8")
    _run(tmp_path / "two", "--batch-size", "4", processes=2)
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for name, value in one.items():
        torch.testing.assert_close(two[name], value, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_killed_and_resumed_distributed_job_ends_like_one_that_ran_through(tmp_path):
    _run(tmp_path / "through", "--batch-size", "4", processes=2)
    _run(tmp_path / "killed", "--batch-size", "4", "--stop-at", "3", processes=2)
    assert not (tmp_path / "killed" / FINAL_NAME).exists()
    _run(tmp_path / "killed", "--batch-size", "4", "--resume", processes=2)
    through, resumed = _weights(tmp_path / "through"), _weights(tmp_path / "killed")
    for name, value in through.items():
        assert torch.equal(resumed[name], value), name


def test_the_loop_writes_tensorboard_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _run(tmp_path / "one", "--batch-size", "8")
    events = EventAccumulator(str(tmp_path / "one" / "tensorboard"))
    events.Reload()
    assert {"toy/total", "toy/lr"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("toy/total")] == [1, 2, 3, 4, 5, 6]
