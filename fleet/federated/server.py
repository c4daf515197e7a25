"""FedAvg's server step: the vehicles' weights averaged, weighted by their window counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from fleet.federated.config import is_int


def average_weights(states: Sequence[Mapping[str, Tensor]], counts: Sequence[int]) -> dict[str, Tensor]:
    """FedAvg's server step: sum_v n_v w_v / sum_v n_v for every floating-point tensor, accumulated in float64
    and returned in its own dtype. Integer and boolean tensors (counters such as BatchNorm's num_batches_tracked;
    the predictor has none) have no meaningful average: they must agree across vehicles and are kept."""
    if not states or len(states) != len(counts):
        raise ValueError(
            f"average_weights: expected one count per state, got {len(states)} states, {len(counts)} counts"
        )
    if not all(is_int(n) and n >= 1 for n in counts):
        raise ValueError(f"average_weights: counts must be ints >= 1, got {list(counts)}")
    names = set(states[0])
    for v, state in enumerate(states[1:], start=1):
        if set(state) != names:
            raise ValueError(f"average_weights: state {v} holds other tensors than state 0 "
                             f"({sorted(names ^ set(state))[:5]})")  # fmt: skip
    total = sum(counts)
    averaged = {}
    for name, first in states[0].items():
        if first.is_floating_point():
            weighted = torch.zeros(first.shape, dtype=torch.float64, device=first.device)
            for state, n in zip(states, counts, strict=True):
                weighted += n * state[name].to(torch.float64)
            averaged[name] = (weighted / total).to(first.dtype)
            continue
        for v, state in enumerate(states[1:], start=1):
            if not torch.equal(state[name], first):
                raise ValueError(f"average_weights: {name} ({first.dtype}) differs between vehicles 0 and {v}; "
                                 "integer state cannot be averaged")  # fmt: skip
        averaged[name] = first.clone()
    return averaged
