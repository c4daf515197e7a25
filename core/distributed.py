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

import logging
import os
import sys

import torch
import torch.distributed as dist


def join_process_group(backend: str | None = None) -> tuple[int, int]:
    """(rank, world size) under torchrun, after joining its process group over `backend` (default: NCCL
    when CUDA is available, else gloo); (0, 1) in a plain process. Joining twice is joining once."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return dist.get_rank(), dist.get_world_size()


def process_group() -> tuple[int, int]:
    """(rank, world size) of the joined process group, (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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
