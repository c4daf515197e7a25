"""The batch loader: batches read ahead in workers are the batches read in the loop; unplanned asks and
worker errors behave."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from perception.jobs.loader import BatchLoader, load_batch


class Squares(Dataset):
    """Item i: {"x": [i, i^2]}; item 13 is a damaged record."""

    def __len__(self) -> int:
        return 20

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if i == 13:
            raise ValueError("item 13: damaged")
        return {"x": torch.tensor([i, i * i], dtype=torch.float32)}


def plan(step: int) -> torch.Tensor:
    return torch.tensor([2 * step, 2 * step + 1]) % 12


def test_read_ahead_batches_equal_the_loops_and_unplanned_asks_are_read_in_place():
    loader = BatchLoader(Squares(), workers=2)
    loader.plan(plan, steps=5)
    try:
        for step in range(5):
            assert torch.equal(loader.load(step, plan(step), "cpu")["x"], load_batch(Squares(), plan(step), "cpu")["x"])
        other = torch.tensor([7, 3])  # not what step 2 planned: read in the loop
        assert torch.equal(loader.load(2, other, "cpu")["x"], torch.tensor([[7.0, 49.0], [3.0, 9.0]]))
    finally:
        loader.close()


def test_a_workers_error_reaches_the_loop_and_bad_settings_are_refused():
    loader = BatchLoader(Squares(), workers=1)
    loader.plan(lambda step: torch.tensor([13]), steps=2)
    try:
        with pytest.raises(ValueError, match="item 13: damaged"):
            loader.load(0, torch.tensor([13]), "cpu")
    finally:
        loader.close()
    with pytest.raises(ValueError, match="workers: expected an int >= 0"):
        BatchLoader(Squares(), workers=-1)
