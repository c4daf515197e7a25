"""Checkpoints: safetensors + JSON config, atomic writes, no unpickling, resumable training state."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_checkpoint,
    load_weights,
    optimizer_from_tensors,
    optimizer_to_tensors,
    restore_rng,
    rng_to_tensors,
    save_checkpoint,
)


def test_round_trip_keeps_weights_config_and_meta(tmp_path):
    model = nn.Linear(3, 2)
    path = save_checkpoint(tmp_path / "m.safetensors", model.state_dict(), {"width": 3}, step=7, trained_by="toy")
    ckpt = load_checkpoint(path)
    assert ckpt.config == {"width": 3} and ckpt.meta == {"step": 7, "trained_by": "toy"}
    assert ckpt.trained_by == "toy" and ckpt.model is None
    fresh = nn.Linear(3, 2)
    fresh.load_state_dict(ckpt.tensors)
    assert torch.equal(fresh.weight, model.weight)


def test_files_written_before_the_model_and_trained_by_keys_say_the_same(tmp_path):
    # Model files named their model `kind` (perception, stack) or `model_kind` (predictor); a training
    # loop's state (it holds optimiser state) named its job `kind`.
    old_model = load_checkpoint(save_checkpoint(tmp_path / "a.safetensors", {}, {}, kind="stack"))
    old_predictor = load_checkpoint(
        save_checkpoint(tmp_path / "b.safetensors", {}, {}, model_kind="predictor", trained_by="prediction-train")
    )
    old_state = load_checkpoint(save_checkpoint(tmp_path / "c.safetensors", {}, {}, kind="pretrain", optimizer={}))
    assert (old_model.model, old_model.trained_by) == ("stack", None)
    assert (old_predictor.model, old_predictor.trained_by) == ("predictor", "prediction-train")
    assert (old_state.model, old_state.trained_by) == (None, "pretrain")


class _Width:
    def __init__(self, width: int):
        self.width = width

    @classmethod
    def from_dict(cls, data):
        return cls(**data)


def test_a_model_file_of_another_model_or_config_is_refused_naming_the_file(tmp_path):
    path = save_checkpoint(tmp_path / "p.safetensors", {}, {"width": 3}, model="predictor")
    assert load_model_checkpoint(path, "predictor", _Width)[1].width == 3
    with pytest.raises(CheckpointError, match=r"p\.safetensors: holds a predictor model, expected stack"):
        load_model_checkpoint(path, "stack", _Width)
    state = save_checkpoint(tmp_path / "s.safetensors", {}, {"depth": 3}, trained_by="toy")
    with pytest.raises(CheckpointError, match=r"s\.safetensors: config is not a _Width"):
        load_model_checkpoint(state, "stack", _Width)


def test_weights_that_do_not_fit_the_module_name_the_file_and_what_they_are():
    module = nn.Linear(3, 2)
    with pytest.raises(CheckpointError, match=r"f\.st: detector weights do not match .*missing \['bias'\]"):
        load_weights(module, {"weight": torch.ones(2, 3)}, "f.st", "detector")
    with pytest.raises(CheckpointError, match=r"f\.st: detector weights do not fit"):
        load_weights(module, {"weight": torch.ones(3, 3), "bias": torch.ones(2)}, "f.st", "detector")
    load_weights(module, {"weight": torch.ones(2, 3), "bias": torch.zeros(2)}, "f.st", "detector")
    assert torch.equal(module.weight, torch.ones(2, 3))


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
