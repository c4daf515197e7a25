"""Checkpoints: safetensors + JSON config, atomic writes, no unpickling, resumable training state."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    restore_rng,
    rng_to_tensors,
    save_checkpoint,
)


def test_round_trip_keeps_weights_config_and_meta(tmp_path):
    model = nn.Linear(3, 2)
    path = save_checkpoint(tmp_path / "m.safetensors", model.state_dict(), {"width": 3}, step=7, kind="toy")
    ckpt = load_checkpoint(path)
    assert ckpt.config == {"width": 3} and ckpt.meta == {"step": 7, "kind": "toy"}
    fresh = nn.Linear(3, 2)
    fresh.load_state_dict(ckpt.tensors)
    assert torch.equal(fresh.weight, model.weight)


def test_corrupted_and_missing_files_give_clear_errors(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", {"w": torch.ones(100)}, {})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"m\.safetensors: corrupted"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "absent.safetensors")
    pickle_like = tmp_path / "model.pt"
    torch.save({"w": torch.ones(2)}, pickle_like)
    with pytest.raises(CheckpointError, match="corrupted or not a safetensors file"):
        load_checkpoint(pickle_like)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", {"w": torch.ones(3)}, {"v": 1})
    with pytest.raises(TypeError):
        save_checkpoint(path, {"w": torch.zeros(3)}, {"v": object()})  # config not JSON-able
    assert load_checkpoint(path).config == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left behind


def test_optimizer_and_rng_state_resume_identically(tmp_path):
    def train(model, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            loss = (model(torch.randn(4, 3)) ** 2).mean()
            loss.backward()
            opt.step()

    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    train(model, opt, 3)
    optim_tensors, optim_rest = optimizer_to_tensors(opt.state_dict())
    tensors = {**model.state_dict(), **optim_tensors, **rng_to_tensors()}
    path = save_checkpoint(tmp_path / "job.safetensors", tensors, {}, optimizer=optim_rest)
    train(model, opt, 3)
    expected = model.weight.detach().clone()

    ckpt = load_checkpoint(path)
    resumed = nn.Linear(3, 1)
    resumed.load_state_dict({k: v for k, v in ckpt.tensors.items() if k in ("weight", "bias")})
    opt2 = torch.optim.AdamW(resumed.parameters(), lr=1e-2)
    opt2.load_state_dict(optimizer_from_tensors(ckpt.tensors, ckpt.meta["optimizer"]))
    restore_rng(ckpt.tensors)
    train(resumed, opt2, 3)
    assert torch.equal(resumed.weight, expected)


def test_checkpoint_files_are_not_pickles(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", {"w": torch.ones(2)}, {})
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    assert path.read_bytes()[8 : 8 + header_len].startswith(b"{")  # a JSON header, then raw bytes
    assert os.path.getsize(path) == 8 + header_len + 2 * 4
