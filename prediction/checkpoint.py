"""Predictor model files: safetensors weights + the `PredictorConfig` as JSON (never unpickled).

Training checkpoints (`step-*.safetensors`) hold the weights under
`predictor.*` plus optimiser state; model files hold the weights under the
same names and nothing else, so `load_predictor` reads either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from core.config import ConfigError
from prediction.config import PredictorConfig
from prediction.model import Predictor

KIND_TRAIN = "prediction-train"
MODEL_KIND = "predictor"
PREFIX = "predictor."


def save_predictor(model: Predictor, path: str | Path, **meta: Any) -> Path:
    """Write the weights and config atomically; `meta` (JSON-able) is stored alongside."""
    tensors = {PREFIX + k: v.detach().contiguous() for k, v in model.state_dict().items()}
    return save_checkpoint(path, tensors, model.cfg.to_dict(), model_kind=MODEL_KIND, **meta)


def load_predictor(path: str | Path, device: torch.device | str = "cpu") -> tuple[Predictor, dict[str, Any]]:
    """(model in eval mode, the file's metadata). A file whose config or weights do not describe a
    predictor raises `CheckpointError` naming the file and what is wrong."""
    ckpt = load_checkpoint(path, device)
    try:
        cfg = PredictorConfig.from_dict(ckpt.config)
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path}: config is not a PredictorConfig ({exc})") from exc
    model = Predictor(cfg).to(device)
    load_predictor_weights(model, ckpt.subset(PREFIX), path)
    return model.eval(), ckpt.meta


def load_predictor_weights(model: Predictor, weights: dict[str, torch.Tensor], source: str | Path) -> None:
    """Copy `weights` (state_dict names) into `model`; missing, unexpected or misshapen tensors raise
    `CheckpointError` naming `source`."""
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {source}: predictor weights do not match its config "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise CheckpointError(f"checkpoint {source}: predictor weights do not fit its config ({exc})") from exc
