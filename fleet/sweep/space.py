"""The search space of a sweep: which fields of the prediction job a trial samples, and in which ranges."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import optuna

from core.config import ConfigError
from prediction.config import PredictorConfig
from prediction.train import PredictionTrainConfig

# Loop fields a searched parameter may not set: the sweep itself drives them.
NOT_SEARCHABLE = frozenset(
    {"out", "steps", "checkpoint_every", "resume", "stop_at", "progress", "device", "seed", "wandb"}
)


@dataclass(frozen=True)
class Dimension:
    """One searched field: a float range (log-uniform when `log`: rates and weights that span decades), or a
    list of `choices` (sizes)."""

    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[int | float, ...] = ()

    def suggest(self, trial: optuna.Trial, name: str) -> int | float:
        if self.choices:
            return trial.suggest_categorical(name, list(self.choices))
        return trial.suggest_float(name, self.low, self.high, log=self.log)


def log_uniform(low: float, high: float) -> Dimension:
    return Dimension(low, high, log=True)


def uniform(low: float, high: float) -> Dimension:
    return Dimension(low, high)


def one_of(*choices: int | float) -> Dimension:
    return Dimension(choices=tuple(choices))


# Field of PredictionTrainConfig (or predictor.<field> of its PredictorConfig) -> its range.
SEARCH_SPACE: dict[str, Dimension] = {
    "lr": log_uniform(3e-4, 1e-2),
    "batch_size": one_of(16, 32, 64),
    "wta_relax": uniform(0.0, 0.2),
    "wta_distance": log_uniform(0.1, 5.0),
    "predictor.hidden": one_of(32, 64, 128),
}


def check_space(space: dict[str, Dimension]) -> None:
    """Every searched name is a field a trial may set, every range is non-empty (so a typo fails the sweep
    now, not every trial later)."""
    job = {f.name for f in fields(PredictionTrainConfig)} - NOT_SEARCHABLE - {"predictor"}
    predictor = {f"predictor.{f.name}" for f in fields(PredictorConfig)}
    if not space:
        raise ConfigError("search space: expected at least one field, got none")
    for name, dim in space.items():
        if name not in job | predictor:
            raise ConfigError(f"search space: {name!r} is not a searchable field of PredictionTrainConfig "
                              f"(or predictor.<field> of its PredictorConfig)")  # fmt: skip
        if not dim.choices and not dim.low < dim.high:
            raise ConfigError(f"search space: {name}: expected low < high, got [{dim.low}, {dim.high}]")
        if dim.log and not dim.low > 0:
            raise ConfigError(f"search space: {name}: a log-uniform range needs low > 0, got {dim.low}")


def suggest_params(trial: optuna.Trial, space: dict[str, Dimension]) -> dict[str, Any]:
    return {name: dim.suggest(trial, name) for name, dim in space.items()}


def apply_params(cfg: PredictionTrainConfig, params: dict[str, Any]) -> PredictionTrainConfig:
    """`cfg` with the sampled values: `name` sets the job's field, `predictor.name` the model's."""
    job = {name: value for name, value in params.items() if not name.startswith("predictor.")}
    model = {name.removeprefix("predictor."): value for name, value in params.items() if name.startswith("predictor.")}
    return replace(cfg, predictor=replace(cfg.predictor, **model), **job)
