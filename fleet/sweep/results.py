"""What a sweep leaves: the study's trials as rows, the best one, trials.csv, best.json and the printed table."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from core.io import write_csv, write_json
from fleet.sweep.settings import OBJECTIVE
from fleet.sweep.space import Dimension
from fleet.sweep.study import shown_url

BEST_FILE = "best.json"
TRIALS_FILE = "trials.csv"


@dataclass
class SweepResult:
    """What a sweep leaves: every trial of the study as a row, the best one (None before any completes), the
    workers that exited with an error, and how many of this invocation's trials ended in each state."""

    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    failed_workers: list[int] = field(default_factory=list)
    added: dict[str, int] = field(default_factory=dict)  # state name -> trials


def columns(space: dict[str, Dimension]) -> list[str]:
    """The columns of trials.csv."""
    return ["number", "state", "value", "steps", "worker", *space, "min_ade", "checkpoint", "error"]


def trial_rows(study: optuna.Study, space: dict[str, Dimension]) -> list[dict[str, Any]]:
    """One row per trial of the study: number, state, value (a pruned trial's is its last reported one), steps
    trained, worker, parameters, minADE, model file and error. The study's trials all searched `space` (it is
    part of the settings a study is joined with)."""
    rows = []
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        attrs = trial.user_attrs
        rows.append({
            "number": trial.number,
            "state": trial.state.name,
            "value": trial.value,
            "steps": attrs.get("steps", 0),
            "worker": attrs.get("worker", ""),
            **{name: trial.params.get(name) for name in space},
            "min_ade": attrs.get("min_ade"),
            "checkpoint": attrs.get("checkpoint", ""),
            "error": attrs.get("error", ""),
        })  # fmt: skip
    return rows


def best_record(study: optuna.Study, storage: str) -> dict[str, Any] | None:
    """best.json: the completed trial with the lowest validation score, or None before any completes."""
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return None
    best = study.best_trial
    return {
        "study": study.study_name,
        "storage": shown_url(storage),
        "objective": OBJECTIVE,
        "value": best.value,
        "trial": best.number,
        "params": best.params,
        "checkpoint": best.user_attrs.get("checkpoint"),
        "worker": best.user_attrs.get("worker"),
        "min_ade": best.user_attrs.get("min_ade"),
        "steps": best.user_attrs.get("steps"),
    }


def added_states(study: optuna.Study, invocation: str) -> dict[str, int]:
    """How many of the trials of one invocation (`make_objective`'s "invocation" attr) ended in each state."""
    trials = study.get_trials(deepcopy=False)
    return dict(Counter(t.state.name for t in trials if t.user_attrs.get("invocation") == invocation))


def write_results(out: Path, result: SweepResult, space: dict[str, Dimension]) -> None:
    """trials.csv always; best.json once a trial has completed (the study only grows, so an earlier best.json
    of the same study is never wrong, only possibly bettered)."""
    write_csv(result.rows, columns(space), out / TRIALS_FILE)
    if result.best is not None:
        write_json(out / BEST_FILE, result.best)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 else f"{value:.4f}"
    return str(value)


def format_table(rows: list[dict[str, Any]], space: dict[str, Dimension]) -> str:
    """The trials as a fixed-width table (the numbers of trials.csv, rounded)."""
    columns = ["number", "state", "value", "steps", "worker", *space, "min_ade"]
    cells = [[_cell(row.get(name)) for name in columns] for row in rows]
    widths = [max(len(name), *(len(c[i]) for c in cells)) if cells else len(name) for i, name in enumerate(columns)]
    lines = ["  ".join(name.rjust(w) for name, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
