"""Data-parallel processes under torchrun: joining its process group, and leaving it without crashing.

torchrun starts one process per rank and says which in the environment (`WORLD_SIZE`, `RANK`, ...). A
process joins the group with `join_process_group` and ends with `leave_process_group`, never by falling
off the end of its program: DistributedDataParallel keeps the group, and with it gloo's worker threads,
alive after `destroy_process_group` (measured with torch 2.13: the threads outlive it once a DDP module
has existed). A worker thread that frees its last finished collective while the interpreter is shutting
down needs the GIL, cannot take it, and aborts the process ("terminate called without an active
exception", SIGABRT; pytorch/pytorch#179291), so a job that trained to the end fails now and then (the
test job: 3 runs of 101 on a loaded 2-core machine). Leaving skips the interpreter's shutdown instead.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import torch
import torch.distributed as dist


def join_process_group(backend: str | None = None) -> tuple[int, int]:
    """(rank, world size) under torchrun, after joining its process group over `backend` (default: NCCL
    when CUDA is available, else gloo) with this rank's GPU (`LOCAL_RANK`) as the current CUDA device;
    (0, 1) in a plain process. Joining twice is joining once."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available() and local < torch.cuda.device_count():
        torch.cuda.set_device(local)  # "cuda" means this rank's own GPU from here on, not the machine's first
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return dist.get_rank(), dist.get_world_size()


def process_group() -> tuple[int, int]:
    """(rank, world size) of the joined process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_gather_json(value: Any, world: int) -> list[Any]:
    """Every rank's `value` (anything `json` writes), in rank order, on every rank. Exchanged as UTF-8 JSON
    bytes in uint8 tensors, never pickled: `torch.distributed`'s object collectives unpickle what a peer
    sends. Floats keep their bits (JSON's shortest round-trip repr; NaN and infinities included)."""
    if world == 1:
        return [value]
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    data = json.dumps(value).encode("utf-8")
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    longest = max(int(s) for s in sizes)
    mine = torch.zeros(longest, dtype=torch.uint8, device=device)
    mine[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    gathered = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(gathered, mine)
    return [json.loads(bytes(t[: int(s)].cpu().numpy())) for t, s in zip(gathered, sizes, strict=True)]


def broadcast_json(value: Any, world: int) -> Any:
    """Rank 0's `value` on every rank (see `all_gather_json`), so every rank takes the decision rank 0
    took: a collective that only some ranks enter waits forever."""
    return all_gather_json(value, world)[0]


def barrier(world: int) -> None:
    """Wait for every rank (nothing to wait for alone)."""
    if world > 1:
        dist.barrier()


def leave_process_group(exit_code: int) -> int:
    """End a process that joined a group: every rank waits for the others, the group is destroyed, output
    and logs are flushed, and the process exits with `exit_code` without the interpreter's shutdown (see
    the module's docstring). In a plain process it only returns `exit_code`."""
    if not (dist.is_available() and dist.is_initialized()):
        return exit_code
    dist.barrier()
    dist.destroy_process_group()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)
