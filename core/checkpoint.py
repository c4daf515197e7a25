"""Checkpoints: safetensors weights plus the JSON config that built them, written atomically.

Loading never unpickles anything: tensors come from safetensors, everything
else (the model config, optimiser hyperparameters, counters) from JSON stored
in the safetensors header's metadata. A training job's optimiser state and
random-number state are flattened into named tensors the same way, so a killed
job resumes from one file.

Every file says what it is in the same two metadata keys: `model`, the model
its weights build ("perception", "predictor", "stack"; absent in a job's own
state), and `trained_by`, the training job that wrote it. `Checkpoint.model`
and `Checkpoint.trained_by` also read files written before these keys (whose
`kind` or `model_kind` said the same), so old checkpoints load unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from core.config import ConfigError
from core.io import atomic_path

FORMAT_VERSION = 1
_OPTIM_PREFIX = "optimizer."


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupted, or not what the caller expected."""


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file holds.

    Attributes:
        tensors: named tensors (model weights under their state_dict names, plus
            any extra state such as `optimizer.*` or `rng.*`).
        config: the JSON config that builds the model.
        meta: anything else JSON-able (kind, version, step, metrics, ...).
    """

    tensors: dict[str, Tensor]
    config: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)

    def subset(self, prefix: str) -> dict[str, Tensor]:
        """Tensors under `prefix` with the prefix removed (e.g. a sub-module's weights)."""
        return {k[len(prefix) :]: v for k, v in self.tensors.items() if k.startswith(prefix)}

    @property
    def model(self) -> str | None:
        """The model the weights build, None for a file that does not say (a training job's state)."""
        legacy = None if _is_training_state(self.meta) else self.meta.get("kind")
        return self.meta.get("model", self.meta.get("model_kind", legacy))

    @property
    def trained_by(self) -> str | None:
        """The training job that wrote the file, None for one no job wrote (an assembled stack)."""
        legacy = self.meta.get("kind") if _is_training_state(self.meta) else None
        return self.meta.get("trained_by", legacy)


def _is_training_state(meta: Mapping[str, Any]) -> bool:
    # Before the `model`/`trained_by` keys, a training loop's checkpoint (the one holding optimiser state)
    # named its job `kind`, and a model file named its model `kind`.
    return "optimizer" in meta


def save_checkpoint(
    path: str | Path,
    tensors: Mapping[str, Tensor],
    config: Mapping[str, Any],
    *,
    model: str | None = None,
    trained_by: str | None = None,
    **meta: Any,
) -> Path:
    """Write `tensors` with `config` and `meta` to `path` atomically; `model` and `trained_by` (see the
    module's docstring) are stored when given.

    The file appears complete or not at all: it is written to a temporary file in
    the same directory, flushed to disk, then renamed over `path`, so a crash
    never leaves a half-written checkpoint or destroys the previous one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    identity = {"model": model, "trained_by": trained_by}
    meta = {**meta, **{key: value for key, value in identity.items() if value is not None}}
    header = {
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(dict(config), sort_keys=True),
        "meta": json.dumps(meta, sort_keys=True),
    }
    # safetensors refuses shared or non-contiguous storage; clone into plain tensors.
    plain = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(plain, str(tmp), metadata=header)
    return path


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`; clear errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            header = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open has no iterator
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path}: corrupted or not a safetensors file ({exc})") from exc
    version = header.get("format_version")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(f"checkpoint {path}: format_version {version!r}, expected {FORMAT_VERSION}")
    try:
        config = json.loads(header["config"])
        meta = json.loads(header.get("meta", "{}"))
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint {path}: header has no readable 'config' ({exc})") from exc
    _check_finite(path, tensors)
    return Checkpoint(tensors=tensors, config=config, meta=meta)


class ModelConfig(Protocol):
    """A model config that builds from a checkpoint's JSON (raising ConfigError or TypeError)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any: ...


ConfigT = TypeVar("ConfigT", bound=ModelConfig)


def load_model_checkpoint(
    path: str | Path, model: str, config_type: type[ConfigT], device: torch.device | str = "cpu"
) -> tuple[Checkpoint, ConfigT]:
    """The checkpoint at `path` with its config read as `config_type`, for building `model`. A file that
    says it holds another model, or whose config is not a `config_type`, raises `CheckpointError` naming the
    file; one that does not say (a training job's state) is read by its config alone."""
    ckpt = load_checkpoint(path, device)
    if ckpt.model not in (None, model):
        raise CheckpointError(f"checkpoint {path}: holds a {ckpt.model} model, expected {model}")
    try:
        return ckpt, config_type.from_dict(ckpt.config)
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path}: config is not a {config_type.__name__} ({exc})") from exc


def load_weights(module: nn.Module, weights: Mapping[str, Tensor], source: str | Path, what: str) -> None:
    """Copy `weights` (state_dict names) into `module`; missing, unexpected or misshapen tensors raise
    `CheckpointError` naming `source` and `what` the weights are (e.g. "detector")."""
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {source}: {what} weights do not match its config "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    try:
        module.load_state_dict(dict(weights))
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise CheckpointError(f"checkpoint {source}: {what} weights do not fit its config ({exc})") from exc


def _check_finite(path: Path, tensors: Mapping[str, Tensor]) -> None:
    """Refuse NaN or infinite weights at load, naming the file and tensor, rather than at the first step
    (as a NaN forecast far from its cause). A diverged training run writes such a checkpoint."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"checkpoint {path}: tensor {name!r} has {bad} NaN or infinite values of {tensor.numel()} "
                "(a diverged training run?)"
            )


def optimizer_to_tensors(state: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Flatten `optimizer.state_dict()` into named tensors and a JSON-able remainder."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, slots in state["state"].items():
        for name, value in slots.items():
            if isinstance(value, Tensor):
                tensors[f"{_OPTIM_PREFIX}{param_id}.{name}"] = value
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(tensors: Mapping[str, Tensor], rest: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of `optimizer_to_tensors`, ready for `optimizer.load_state_dict`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if not key.startswith(_OPTIM_PREFIX):
            continue
        param_id, name = key[len(_OPTIM_PREFIX) :].split(".", 1)
        state.setdefault(int(param_id), {})[name] = value
    for param_id, slots in rest.get("scalars", {}).items():
        state.setdefault(int(param_id), {}).update(slots)
    return {"state": state, "param_groups": [dict(g) for g in rest["param_groups"]]}


def rng_to_tensors(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Tensor]:
    """The global torch RNG state and any named generators' states, as uint8 tensors."""
    out = {"rng.torch": torch.get_rng_state()}
    for name, gen in (generators or {}).items():
        out[f"rng.{name}"] = gen.get_state()
    return out


def restore_rng(tensors: Mapping[str, Tensor], generators: Mapping[str, torch.Generator] | None = None) -> None:
    """Restore what `rng_to_tensors` saved (missing entries are an error naming them)."""
    wanted = ["torch", *(generators or {})]
    missing = [n for n in wanted if f"rng.{n}" not in tensors]
    if missing:
        raise CheckpointError(f"checkpoint has no random-number state for {missing}")
    torch.set_rng_state(tensors["rng.torch"].to("cpu", torch.uint8))
    for name, gen in (generators or {}).items():
        gen.set_state(tensors[f"rng.{name}"].to("cpu", torch.uint8))
