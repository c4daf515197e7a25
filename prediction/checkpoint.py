"""Predictor model files: safetensors weights + the `PredictorConfig` as JSON (never unpickled).

Training checkpoints (`step-*.safetensors`) hold the weights under
`predictor.*` plus optimiser state; model files hold the weights under the
same names and nothing else, so `load_predictor` reads either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from core.checkpoint import load_model_checkpoint, load_weights, save_checkpoint
from prediction.config import PredictorConfig
from prediction.model import Predictor

KIND_TRAIN = "prediction-train"
MODEL_KIND = "predictor"
PREFIX = "predictor."


def save_predictor(model: Predictor, path: str | Path, **meta: Any) -> Path:
    """Write the weights and config atomically; `meta` (JSON-able) is stored alongside."""
    tensors = {PREFIX + k: v.detach().contiguous() for k, v in model.state_dict().items()}
    return save_checkpoint(path, tensors, model.cfg.to_dict(), model=MODEL_KIND, **meta)


def load_predictor(path: str | Path, device: torch.device | str = "cpu") -> tuple[Predictor, dict[str, Any]]:
    """(model in eval mode, the file's metadata). A file whose config or weights do not describe a
    predictor raises `CheckpointError` naming the file and what is wrong."""
    ckpt, cfg = load_model_checkpoint(path, MODEL_KIND, PredictorConfig, device)
    model = Predictor(cfg).to(device)
    load_weights(model, ckpt.subset(PREFIX), path, "predictor")
    return model.eval(), ckpt.meta
