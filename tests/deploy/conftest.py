"""A tiny stack exported once per test session: the artifact every deploy test reads."""

from __future__ import annotations

import pytest
import torch

from deploy.export import export_stack
from perception.model import PerceptionConfig
from sim.config import RasterConfig
from stack.config import StackConfig
from stack.model import Stack

RASTER = RasterConfig(size=32, resolution=1.0)


def tiny_stack(seed: int = 0, **changes) -> Stack:
    torch.manual_seed(seed)
    return Stack(StackConfig.tiny(perception=PerceptionConfig.tiny(RASTER), **changes)).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    tiny_stack().save(path)
    return path


@pytest.fixture(scope="session")
def artifact(tiny_checkpoint, tmp_path_factory):
    """Every graph of the tiny stack, exported (the slow part, shared by all deploy tests)."""
    return export_stack(tiny_checkpoint, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="session")
def loaded_stack(tiny_checkpoint):
    return Stack.load(tiny_checkpoint)
