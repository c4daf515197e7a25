"""Where a training job's scalars go: TensorBoard always, Weights & Biases when asked for and installed.

Rank 0 logs (every rank holds the same weights and a share of the same batch).
TensorBoard writes `out/tensorboard` (`tensorboard --logdir runs`). With a W&B
project (`--wandb PROJECT`, the job config's `wandb`) the same scalars and the
job config go to a W&B run; its id is kept in `out/wandb-run-id`, so a resumed
job continues its own run instead of starting another. W&B's own settings
(`WANDB_MODE=offline` on a machine without internet, `WANDB_DIR`, the API key)
apply as usual.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from core.config import ConfigError

TENSORBOARD_DIR = "tensorboard"
WANDB_ID_FILE = "wandb-run-id"


class MetricSinks:
    """The job's scalar loggers; a no-op on ranks other than 0."""

    def __init__(self, out: Path, rank: int, wandb_project: str | None, job: dict[str, Any]):
        self.board = self.run = None
        # Every rank checks for the package: rank 0 failing alone would leave its peers waiting forever.
        wandb = _import_wandb(wandb_project) if wandb_project else None
        if rank != 0:
            return
        from torch.utils.tensorboard import SummaryWriter  # imported here: it loads tensorboard, which is slow

        self.board = SummaryWriter(log_dir=str(out / TENSORBOARD_DIR))
        if wandb is not None:
            self.run = _wandb_run(wandb, out, wandb_project, job)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if self.board is not None:
            for name, value in scalars.items():
                self.board.add_scalar(name, value, step)
        if self.run is not None:
            self.run.log(scalars, step=step)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
        if self.run is not None:
            self.run.finish()


def _import_wandb(project: str) -> Any:
    try:
        import wandb
    except ImportError as exc:
        raise ConfigError(f"wandb: project {project!r} asked for, but the wandb package is not installed "
                          "(pip install wandb)") from exc  # fmt: skip
    return wandb


def _wandb_run(wandb: Any, out: Path, project: str, job: dict[str, Any]) -> Any:
    """A W&B run for the job in `out`: the same run again when the job resumes."""
    id_file = out / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)  # W&B's id alphabet
    out.mkdir(parents=True, exist_ok=True)
    id_file.write_text(run_id + "\n")
    return wandb.init(project=project, id=run_id, resume="allow", name=out.name, dir=str(out), config=job)
