"""Measure a predictor on trajectory windows through the public API only (`predict_positions`, `forecast`).

For the agents the protocol scores (observed at all 8 history steps and
present at all 12 future ones):

* min_ade / min_fde: best of `num_samples` (20) sampled futures, each minimised separately;
* ade / fde: the most likely mode's mean (`Forecast.most_likely`);
* modes_min_ade / modes_min_fde / best_mode_weight: the best of the forecast's K mode means (does
  one of the alternatives follow the truth, whatever its weight) and the weight of the mode whose
  mean ends closest to the truth;
* nll_step / nll_joint: exact negative log-likelihood of the truth under the forecast mixture;
* kde_nll: Trajectron++'s KDE NLL over `kde_samples` (2000) samples (skipped when 0);
* mode_entropy / modes_used / top_weight: how many of the forecast's modes carry weight;
* coverage_1sigma / coverage_2sigma: how often the truth lies in the forecast's 1- and 2-sigma
  regions, per step (`prediction.metrics.coverage`; 39.3 % and 86.5 % when calibrated; skipped
  when `coverage_samples` is 0).

Every model receives the observed steps only (`TrajectoryWindows.observed`), with
the agents' classes and boxes. `evaluate_groups` pools the same run per group of
agents (per class, per scenario family).
Results are pooled over agents (`prediction.metrics.Totals`), so a scene's mean
does not depend on how its windows were batched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
from torch import Tensor
from tqdm import tqdm

from prediction.metrics import (
    COVERAGE_SAMPLES,
    AgentScores,
    Totals,
    ade_fde,
    best_mode,
    coverage,
    kde_nll,
    min_ade_fde,
    mixture_nll,
    mode_usage,
)
from prediction.types import Forecast
from prediction.windows import TrajectoryWindows


class PositionPredictor(Protocol):
    """What `prediction.api.load` and `prediction.api.baseline` return."""

    def predict_positions(
        self, obs_xy: Tensor, obs_valid: Tensor, num_samples: int = 20, seed: int = 0, *,
        class_probs: Tensor | None = None, size: Tensor | None = None, lanes: Tensor | None = None,
        lanes_valid: Tensor | None = None,
    ) -> Tensor: ...  # fmt: skip

    def forecast(
        self, obs_xy: Tensor, obs_valid: Tensor, *, class_probs: Tensor | None = None, size: Tensor | None = None,
        lanes: Tensor | None = None, lanes_valid: Tensor | None = None,
    ) -> Forecast: ...  # fmt: skip


def evaluate_windows(model: PositionPredictor, windows: TrajectoryWindows, **kw) -> Totals:
    """Pooled metric sums over the scored agents of `windows` (`.means()` gives the averages); keywords
    as `evaluate_groups`."""
    return evaluate_groups(model, windows, {"all": torch.ones_like(windows.valid)}, **kw)["all"]


def evaluate_groups(
    model: PositionPredictor,
    windows: TrajectoryWindows,
    groups: Mapping[str, Tensor],
    num_samples: int = 20,
    kde_samples: int = 2000,
    coverage_samples: int = COVERAGE_SAMPLES,
    seed: int = 0,
    chunk: int = 16,
    progress: bool = False,
) -> dict[str, Totals]:
    """Pooled metric sums per group: `groups` maps a name to a `[S, A]` bool mask of the agents it
    holds (e.g. one class, one scenario family); each group pools its scored agents. Every agent of a
    window is observed by the model whatever its group, so a group's scores are those of the same run.
    The model reads the windows' classes, boxes and lanes."""
    for name, mask in groups.items():
        if not (isinstance(mask, Tensor) and mask.dtype == torch.bool and mask.shape == windows.valid.shape):
            got = (tuple(mask.shape), mask.dtype) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"groups[{name!r}]: expected a bool mask of shape {tuple(windows.valid.shape)} (the "
                             f"windows' [S, A]), got {got}")  # fmt: skip
    totals = {name: Totals() for name in groups}
    starts = range(0, windows.batch_size, chunk)
    for i, start in enumerate(tqdm(starts, desc="evaluate", disable=not progress)):
        index = torch.arange(start, min(start + chunk, windows.batch_size))
        batch = windows.index(index).trimmed()
        scored = batch.scored()
        if not bool(scored.any()):
            continue
        obs_xy, obs_valid = batch.observed()
        truth, _ = batch.future()
        agents = {"class_probs": batch.class_probs, "size": batch.size, "lanes": batch.lanes,
                  "lanes_valid": batch.lanes_valid}  # fmt: skip
        samples = model.predict_positions(obs_xy, obs_valid, num_samples=num_samples, seed=seed + i, **agents)
        forecast = model.forecast(obs_xy, obs_valid, **agents)
        values = {
            **min_ade_fde(samples, truth, scored).values,
            **ade_fde(forecast.most_likely(), truth, scored).values,
            **best_mode(forecast, truth, scored).values,
            **mixture_nll(forecast, truth, scored).values,
            **mode_usage(forecast, scored).values,
        }
        if coverage_samples > 0:
            generator = torch.Generator().manual_seed(seed + i + 2_000_003)
            values.update(coverage(forecast, truth, scored, coverage_samples, generator).values)
        if kde_samples > 0:
            many = model.predict_positions(
                obs_xy, obs_valid, num_samples=kde_samples, seed=seed + i + 1_000_003, **agents
            )
            values.update(kde_nll(many, truth, scored).values)
        for name, mask in groups.items():
            width = scored.shape[1]  # `trimmed` dropped slots no window of the batch uses
            member = scored & mask[index, :width].to(scored.device)
            totals[name] = totals[name] + AgentScores(values, member).totals()  # one count per agent
    return totals


def evaluate_scene(model: PositionPredictor, windows: TrajectoryWindows, **kw) -> dict[str, float]:
    """Averages over the scored agents, plus their count."""
    total = evaluate_windows(model, windows, **kw)
    return {**total.means(), "agents": total.count}
