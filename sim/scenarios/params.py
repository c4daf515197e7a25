"""Procedural parameters and the per-episode draws that sample them.

A parameter is a fixed value or a distribution (`{uniform: [lo, hi]}`,
`{int_uniform: [lo, hi]}`, `{choice: [...]}`). Every draw is keyed by
(episode seed, step 0, `Stream.SCENARIO`, hash of the draw's name, index), so
an episode depends on its seed alone, never on the batch it shares.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch
from torch import Tensor

from sim import rng


@dataclass(frozen=True)
class Fixed:
    value: object

    def values(self) -> tuple:
        return (self.value,)


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def values(self) -> tuple:
        return (self.low, self.high)


@dataclass(frozen=True)
class IntUniform:
    """Integers low..high inclusive, equally likely."""

    low: int
    high: int

    def values(self) -> tuple:
        return (self.low, self.high)


@dataclass(frozen=True)
class Choice:
    options: tuple

    def values(self) -> tuple:
        return self.options


Param = Fixed | Uniform | IntUniform | Choice


def upper(param: Param) -> float:
    """The largest value the parameter can take (numbers only)."""
    return max(param.values())


def lower(param: Param) -> float:
    return min(param.values())


def name_key(name: str) -> int:
    """A stable 31-bit key for a draw's name (Python's hash() is salted per process)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


class Draws:
    """Keyed random draws for a batch of episodes `seeds [B]`."""

    def __init__(self, seeds: Tensor):
        self.seeds = seeds.long()

    @property
    def batch(self) -> int:
        return int(self.seeds.shape[0])

    def uniform(self, name: str, shape: tuple[int, ...] = ()) -> Tensor:
        """U[0, 1) float64 `[B, *shape]`; element j of the trailing dims is keyed by its flat index j."""
        count = 1
        for n in shape:
            count *= n
        index = torch.arange(count, dtype=torch.long).reshape(1, *shape)
        seeds = self.seeds.reshape(-1, *([1] * len(shape)))
        return rng.uniform(seeds, 0, rng.Stream.SCENARIO, name_key(name), index, dtype=torch.float64)

    def sample(self, param: Param, name: str, shape: tuple[int, ...] = ()) -> Tensor:
        """Values `[B, *shape]`: float64 for numbers, long for ints, long option indices
        for a `Choice` of strings and bool for booleans."""
        if isinstance(param, Fixed):
            return _constant(param.value, (self.batch, *shape))
        u = self.uniform(name, shape)
        if isinstance(param, Uniform):
            return param.low + u * (param.high - param.low)
        if isinstance(param, IntUniform):
            span = param.high - param.low + 1
            return param.low + (u * span).long().clamp_max(span - 1)
        pick = (u * len(param.options)).long().clamp_max(len(param.options) - 1)
        options = param.options
        if all(isinstance(o, bool) for o in options):
            return torch.tensor(options, dtype=torch.bool)[pick]
        if all(isinstance(o, int) and not isinstance(o, bool) for o in options):
            return torch.tensor(options, dtype=torch.long)[pick]
        if all(isinstance(o, (int, float)) and not isinstance(o, bool) for o in options):
            return torch.tensor(options, dtype=torch.float64)[pick]
        return pick

    def episode_values(self, param: Param, name: str) -> list:
        """One Python value per episode (strings for a choice of strings)."""
        if isinstance(param, Fixed):
            return [param.value] * self.batch
        drawn = self.sample(param, name).tolist()
        if isinstance(param, Choice) and isinstance(param.options[0], str):
            return [param.options[i] for i in drawn]
        return drawn


def _constant(value: object, shape: tuple[int, ...]) -> Tensor:
    if isinstance(value, bool):
        return torch.full(shape, value, dtype=torch.bool)
    if isinstance(value, int):
        return torch.full(shape, value, dtype=torch.long)
    if isinstance(value, float):
        return torch.full(shape, value, dtype=torch.float64)
    raise TypeError(f"cannot make a tensor of {value!r}; draw strings with episode_values")
