"""Paired bootstrap intervals of one policy's differences from another over the same episodes.

Two rows of a comparison drove the same episodes (scenario, seed), so their
difference is judged episode by episode: resample the episodes with
replacement, take the mean difference of the score and of the at-fault
collision indicator, and report the 2.5 % and 97.5 % quantiles over the
resamples. Failed episodes (a policy error) are left out of both rows.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

EPISODE_KEYS = ("score", "collided", "progress")
RESAMPLES = 2000
SEED = 0
# (row, reference): the stack against the baselines and its ablation, then the diagnostics that say
# whether planning or perception makes the difference (same sensor, two planners; same planner, two
# sensors; same perception, distributions against thresholds).
PAIRS = (
    ("stack", "pdm"),
    ("stack", "pdm-gt"),
    ("stack", "stack-argmax"),
    ("stack-objects", "pdm"),
    ("stack-gt", "pdm-gt"),
    ("stack", "pdm-stack"),
    ("stack-objects", "stack"),
)


def episode_metrics(path: Path) -> dict[tuple[str, int], dict[str, float]]:
    """{(scenario, seed): {"score", "collided", "progress"}} of a run's episodes.csv (collided: at fault;
    progress: m), failed episodes left out."""
    rows = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("error"):
                continue
            rows[(row["scenario"], int(row["seed"]))] = {key: float(row[key]) for key in EPISODE_KEYS}
    return rows


def paired_interval(a: dict, b: dict, key: str, resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, Any]:
    """Mean of a - b over the episodes both hold, and its 95 % bootstrap interval."""
    shared = sorted(set(a) & set(b))
    if not shared:
        return {"episodes": 0, "mean": None, "low": None, "high": None}
    diff = torch.tensor([a[k][key] - b[k][key] for k in shared], dtype=torch.float64)
    generator = torch.Generator().manual_seed(seed)
    index = torch.randint(0, len(shared), (resamples, len(shared)), generator=generator)
    means = diff[index].mean(-1)
    low, high = torch.quantile(means, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return {"episodes": len(shared), "mean": float(diff.mean()), "low": low, "high": high}


def differences(out: Path, labels: list[str]) -> dict[str, Any]:
    """Each pair of `PAIRS` whose two rows are in `labels`, keyed "row-reference": score and collision-rate
    differences with their intervals (the collision difference in percentage points)."""
    pairs = [(row, ref) for row, ref in PAIRS if row in labels and ref in labels]
    metrics = {label: episode_metrics(out / label / "episodes.csv") for label in {x for pair in pairs for x in pair}}
    return {f"{row}-{ref}": _pair(metrics[row], metrics[ref]) for row, ref in pairs}


def sweep_differences(out: Path, labels: list[str]) -> list[dict[str, Any]]:
    """The sigma sweep's steps: for runs `labels` in increasing sigma, each run minus the one before it,
    then the last minus the first; score, collision (percentage points) and progress (m) differences
    with their intervals, each tagged with its `row` and `reference` labels."""
    metrics = {label: episode_metrics(out / label / "episodes.csv") for label in labels}
    steps = list(zip(labels[:-1], labels[1:], strict=True))
    if len(labels) > 2:
        steps.append((labels[0], labels[-1]))
    return [{"row": row, "reference": ref, **_pair(metrics[row], metrics[ref])} for ref, row in steps]


def _pair(a: dict, b: dict) -> dict[str, Any]:
    collided = paired_interval(a, b, "collided")
    collided = {k: (100.0 * v if isinstance(v, float) else v) for k, v in collided.items()}
    return {"score": paired_interval(a, b, "score"), "collision_pct": collided,
            "progress_m": paired_interval(a, b, "progress")}  # fmt: skip
