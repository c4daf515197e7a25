"""Fixtures shared across test folders: a tiny stack exported once per test session."""

from __future__ import annotations

import pytest

from deploy.export import export_stack
from stack.model import Stack
from tests.tiny_stack import tiny_stack


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    tiny_stack().save(path)
    return path


@pytest.fixture(scope="session")
def artifact(tiny_checkpoint, tmp_path_factory):
    """Every graph of the tiny stack, exported (the slow part, shared by the deploy and hostile tests)."""
    return export_stack(tiny_checkpoint, tmp_path_factory.mktemp("export"))


@pytest.fixture(scope="session")
def loaded_stack(tiny_checkpoint):
    return Stack.load(tiny_checkpoint)
