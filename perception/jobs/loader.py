"""Reading the perception jobs' batches, in the training loop or ahead of it in worker processes.

An item read from a drive log costs a few milliseconds of one core (its chunks decompressed, its K frames
warped into the detector input; `bench/log_reading.py`), so one process reads about 300 items/s as the jobs
draw them: on a GPU, fewer than a pretraining step consumes. With `workers` > 0 a `BatchLoader` reads the
batches of the next steps in that many processes while the loop trains. A batch is a pure function of the
logs and its item indices, so a job trains the same with any number of workers (tested); with 0 it reads in
the loop, which is right on a CPU, where the step itself is the cost.

    loader = BatchLoader(dataset, workers=4)
    trainer = ...                                       # whose loss calls loader.load(step, index, device)
    loader.plan(lambda step: trainer.batch(step), steps=cfg.steps)
    try:
        trainer.run()
    finally:
        loader.close()
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor

import torch
from torch import Tensor
from torch.utils.data import Dataset

AHEAD_PER_WORKER = 2  # batches read ahead per worker: enough to keep every worker busy through a slow step


def load_batch(dataset: Dataset, index: Tensor, device: str) -> dict[str, Tensor]:
    """Items `index [B]` of `dataset` stacked into one batch dict, on `device`."""
    return {name: value.to(device) for name, value in _stacked(dataset, index.tolist()).items()}


def _stacked(dataset: Dataset, index: list[int]) -> dict[str, Tensor]:
    items = [dataset[i] for i in index]
    return {name: torch.stack([item[name] for item in items]) for name in items[0]}


class BatchLoader:
    """Batches of `dataset`, read in `workers` processes ahead of the steps that ask for them (see the module
    docstring); a step that asks for another batch than `plan` said is read in the loop."""

    def __init__(self, dataset: Dataset, workers: int):
        if not (isinstance(workers, int) and workers >= 0):
            raise ValueError(f"BatchLoader.workers: expected an int >= 0, got {workers!r}")
        self.dataset, self.workers = dataset, workers
        self._indices_of: Callable[[int], Tensor] | None = None
        self._steps = 0
        self._pool: ProcessPoolExecutor | None = None
        self._pending: dict[int, tuple[Tensor, Future]] = {}

    def plan(self, indices_of: Callable[[int], Tensor], steps: int) -> None:
        """Step s < `steps` will ask for the items `indices_of(s)`: the batches the workers read ahead."""
        self._indices_of, self._steps = indices_of, steps

    def load(self, step: int, index: Tensor, device: str) -> dict[str, Tensor]:
        """The batch of items `index` that step `step` asks for, on `device`."""
        if self.workers == 0 or self._indices_of is None:
            return load_batch(self.dataset, index, device)
        self._read_ahead(step)
        planned, future = self._pending.pop(step, (None, None))
        if planned is None or not torch.equal(planned, index):
            return load_batch(self.dataset, index, device)
        return {name: value.to(device) for name, value in future.result().items()}

    def _read_ahead(self, step: int) -> None:
        for stale in [s for s in self._pending if s < step]:  # steps the loop did not ask for
            self._pending.pop(stale)[1].cancel()
        for s in range(step, min(step + AHEAD_PER_WORKER * self.workers, self._steps)):
            if s not in self._pending:
                index = self._indices_of(s)
                self._pending[s] = (index, self._executor().submit(_read_in_worker, index.tolist()))

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # Spawned, not forked: the training process may hold CUDA, which a forked child cannot use safely.
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker,
                                             initargs=(self.dataset,))  # fmt: skip
        return self._pool

    def close(self) -> None:
        """Stop the workers (batches still being read are dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()


_WORKER_DATASET: Dataset | None = None  # the dataset of this worker process (`_start_worker`)


def _start_worker(dataset: Dataset) -> None:
    global _WORKER_DATASET
    _WORKER_DATASET = dataset
    torch.set_num_threads(1)  # one core per worker: the workers are the parallelism


def _read_in_worker(index: list[int]) -> dict[str, Tensor]:
    return _stacked(_WORKER_DATASET, index)
