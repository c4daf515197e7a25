"""The history buffer: every tracker step of the last L, sampled `steps_per_sample` apart for `Tracks`.

Keeping every step (rather than one sample per `sample_dt`) costs a few times
the memory but makes the output exact at every step: the samples are always
0, 1, ..., H-1 periods before *now*, whichever step of the period now is, with
no step counter and no branching.
"""

from __future__ import annotations

import torch
from torch import Tensor


def push(history: Tensor, current: Tensor) -> Tensor:
    """Drop the oldest step of `history [B, A, L, ...]` and append `current [B, A, ...]`."""
    return torch.cat((history[:, :, 1:], current.unsqueeze(2)), 2)


def sample_indices(history_steps: int, steps_per_sample: int, device: torch.device) -> Tensor:
    """[H] buffer indices of the output steps, oldest first; the last is the current step."""
    return torch.arange(history_steps, device=device) * steps_per_sample


def sample(history: Tensor, indices: Tensor) -> Tensor:
    """[B, A, H, ...] the buffer's entries at `indices [H]`."""
    return history.index_select(2, indices)
