"""A tiny stack on a 32x32 raster: what the deploy and hostile-input tests export and run."""

from __future__ import annotations

import torch

from perception.model import PerceptionConfig
from sim.config import RasterConfig
from stack.config import StackConfig
from stack.model import Stack

RASTER = RasterConfig(size=32, resolution=1.0)


def tiny_stack(seed: int = 0, **changes) -> Stack:
    torch.manual_seed(seed)
    return Stack(StackConfig.tiny(perception=PerceptionConfig.tiny(RASTER), **changes)).eval()
