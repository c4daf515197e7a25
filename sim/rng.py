"""Counter-based random numbers: every draw is a pure function of its key.

The simulator never holds a generator. A draw is keyed by (episode seed, step,
stream, slot), hashed with the `lowbias32` integer hash, so an episode gives the
same numbers bit for bit whatever else shares its batch, and `step` stays a
pure function of its inputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

_MASK32 = 0xFFFFFFFF


def _hash32(x: Tensor) -> Tensor:
    """lowbias32 on int64 tensors holding 32-bit values (products wrap mod 2^64,
    and the low 32 bits, which are all we keep, are exact)."""
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def hash_keys(*keys: Tensor | int) -> Tensor:
    """Combine integer keys (broadcast together) into one 32-bit hash."""
    h: Tensor | None = None
    for k in keys:
        k = torch.as_tensor(k, dtype=torch.long) if not isinstance(k, Tensor) else k.long()
        h = _hash32(k) if h is None else _hash32(h * 0x9E3779B1 + _hash32(k))
    if h is None:
        raise ValueError("hash_keys needs at least one key")
    return h


def uniform(*keys: Tensor | int, dtype: torch.dtype = torch.float32) -> Tensor:
    """U[0, 1) from 24 hash bits (exact in float32)."""
    return (hash_keys(*keys) >> 8).to(dtype) * (1.0 / (1 << 24))


def normal(*keys: Tensor | int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal by Box-Muller from two uniforms with derived keys."""
    u1 = uniform(*keys, 0x51ED, dtype=dtype).clamp_min(1e-7)
    u2 = uniform(*keys, 0xB0A7, dtype=dtype)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)


class Stream:
    """Named key spaces so different uses of randomness never share draws."""

    SENSOR_JITTER = 1
    SENSOR_MISS = 2
    SENSOR_GHOST = 3
    SENSOR_RASTER = 4
    SCENARIO = 5
    POLICY = 6
