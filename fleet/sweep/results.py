"""What a sweep leaves: the study's trials as rows, the best one, trials.csv, best.json and the printed table."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from fleet.sweep.settings import OBJECTIVE
from fleet.sweep.space import Dimension
from fleet.sweep.study import shown_url
from sim.metrics.writers import atomic_write_text
from sim.training import write_json

BEST_FILE = "best.json"
TRIALS_FILE = "trials.csv"


@dataclass
class SweepResult:
    """What a sweep leaves: every trial of the study as a row, the best one (None before any completes), and
    the workers that exited with an error."""

    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    failed_workers: list[int] = field(default_factory=list)


def trial_rows(study: optuna.Study, space: dict[str, Dimension]) -> list[dict[str, Any]]:
    """One row per trial of the study: number, state, value (a pruned trial's is its last reported one), steps
    trained, worker, parameters, minADE, model file and error."""
    rows, names = [], param_names(study, space)
    for trial in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        attrs = trial.user_attrs
        rows.append({
            "number": trial.number,
            "state": trial.state.name,
            "value": trial.value,
            "steps": attrs.get("steps", 0),
            "worker": attrs.get("worker", ""),
            **{name: trial.params.get(name) for name in names},
            "min_ade": attrs.get("min_ade"),
            "checkpoint": attrs.get("checkpoint", ""),
            "error": attrs.get("error", ""),
        })  # fmt: skip
    return rows


def param_names(study: optuna.Study, space: dict[str, Dimension]) -> list[str]:
    """The searched names in table order, then any the study's older trials searched besides."""
    seen = {name for trial in study.get_trials(deepcopy=False) for name in trial.params}
    return list(space) + sorted(seen - set(space))


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


def trials_csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return text.getvalue()


def write_results(out: Path, result: SweepResult) -> None:
    """trials.csv always; best.json once a trial has completed (the study only grows, so an earlier best.json
    of the same study is never wrong, only possibly bettered)."""
    atomic_write_text(out / TRIALS_FILE, trials_csv(result.rows))
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
