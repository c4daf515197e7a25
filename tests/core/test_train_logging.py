"""Training scalars: Weights & Biases when asked for (a resumed job continues its run), a clear error without it."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from core.config import ConfigError
from core.train_logging import WANDB_ID_FILE, MetricSinks
from core.training import FINAL_NAME, LoopSettings, Trainer


class FakeWandb(types.ModuleType):
    """Records what the loop asks of `wandb` (the package is optional and not installed for the tests)."""

    def __init__(self):
        super().__init__("wandb")
        self.inits: list[dict] = []
        self.logged: list[tuple[dict, int]] = []
        self.finished = 0

    def init(self, **kwargs):
        self.inits.append(kwargs)
        fake = self

        class Run:
            def log(self, scalars, step):
                fake.logged.append((dict(scalars), step))

            def finish(self):
                fake.finished += 1

        return Run()


@dataclass(frozen=True)
class Job(LoopSettings):
    wandb: str | None = "drivestack-tests"
    steps: int = 4
    batch_size: int = 2
    lr: float = 0.1
    weight_decay: float = 0.0
    warmup_steps: int = 0
    checkpoint_every: int = 2
    progress: bool = False


def run_job(job: Job) -> Path:
    torch.manual_seed(0)
    modules = nn.ModuleDict({"net": nn.Linear(2, 1)})
    x = torch.randn(8, 2)

    def loss_fn(index, generator, step):
        loss = modules["net"](x[index]).pow(2).mean()
        return loss, {"total": loss.detach()}

    def finalize(steps, seconds):
        (job.out / FINAL_NAME).write_text("done")
        return job.out / FINAL_NAME

    return Trainer(job, "toy", modules, torch.arange(8), loss_fn, {}, finalize).run()


def test_a_job_logs_to_its_wandb_run_and_a_resumed_job_continues_it(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run_job(Job(out=tmp_path, stop_at=2))
    run_job(Job(out=tmp_path, resume=True))
    first = fake.inits[0]["id"]
    assert [i["id"] for i in fake.inits] == [first, first]  # one run, continued
    assert all(i["project"] == "drivestack-tests" and i["resume"] == "allow" for i in fake.inits)
    assert fake.inits[0]["config"]["steps"] == 4
    assert [step for _, step in fake.logged] == [1, 2, 3, 4]
    assert {"toy/total", "toy/lr"} == set(fake.logged[0][0]) and fake.finished == 2
    assert (tmp_path / WANDB_ID_FILE).read_text().strip() == first


def test_no_wandb_project_means_tensorboard_only(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run_job(Job(out=tmp_path, wandb=None))
    assert fake.inits == [] and (tmp_path / "tensorboard").is_dir()


def test_asking_for_wandb_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    for rank in (0, 1):  # every rank stops, not rank 0 alone
        with pytest.raises(ConfigError, match="wandb.*not installed"):
            MetricSinks(tmp_path, rank, "project", {})


def test_only_rank_0_logs(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    sinks = MetricSinks(tmp_path, 1, "project", {})
    assert sinks.run is None and sinks.board is None and fake.inits == []
