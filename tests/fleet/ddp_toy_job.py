"""A small job on the shared training loop, run as a script (one process) or under torchrun (several).

    python tests/fleet/ddp_toy_job.py --out DIR --batch-size 8
    python -m torch.distributed.run --nproc-per-node 2 tests/fleet/ddp_toy_job.py --out DIR --batch-size 4

Writes DIR/final.safetensors; the test compares the weights of the two ways.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root, when run as a script

from core.checkpoint import save_checkpoint  # noqa: E402
from core.distributed import join_process_group, leave_process_group  # noqa: E402
from core.training import FINAL_NAME, LoopSettings, Trainer  # noqa: E402


@dataclass(frozen=True)
class ToyJob(LoopSettings):
    steps: int = 6
    batch_size: int = 8
    lr: float = 0.05
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 10.0
    checkpoint_every: int = 2
    progress: bool = False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--stop-at", type=int)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    join_process_group("gloo")  # several processes share one GPU, if any: NCCL would refuse
    torch.manual_seed(0)
    data = torch.Generator().manual_seed(1)
    inputs = torch.randn(64, 3, generator=data)
    targets = inputs @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(64, 1, generator=data)
    modules = nn.ModuleDict({"net": nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))})

    def loss_fn(index, generator, step):
        loss = (modules["net"](inputs[index]) - targets[index]).pow(2).mean()
        return loss, {"total": loss.detach()}

    cfg = ToyJob(out=args.out, batch_size=args.batch_size, stop_at=args.stop_at, resume=args.resume)

    def finalize(steps: int, seconds: float) -> Path:
        return save_checkpoint(Path(args.out) / FINAL_NAME, modules.state_dict(), {}, trained_by="toy")

    Trainer(cfg, "toy", modules, torch.arange(64), loss_fn, {}, finalize).run()
    leave_process_group(0)


if __name__ == "__main__":
    main()
