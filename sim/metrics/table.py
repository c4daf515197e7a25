"""Many episodes -> per-family summary rows and an overall row; CSV/JSON writers.

An episode record is a mapping with
    family: str, seed: int, error: str | None (None or "" when it ran to the end),
    metrics: mapping of result name -> float (`EpisodeAccumulator.finalize()`'s
        keys plus "score"); may be empty for a failed episode,
and optionally scenario: str. Failed episodes count in `episodes` and `failed`
and stay in the per-episode CSV, but no mean includes them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from core.io import write_csv, write_json

SCORE_KEY = "score"
RECORD_KEYS = ("scenario", "family", "seed", "error")

# Summary columns: (key, header in the terminal table, format).
COLUMNS = (
    ("family", "family", "{}"),
    ("episodes", "eps", "{:d}"),
    ("failed", "fail", "{:d}"),
    ("score_mean", "score", "{:.3f}"),
    ("at_fault_collision_rate_pct", "coll%", "{:.1f}"),
    ("at_fault_collisions_per_km", "coll/km", "{:.2f}"),
    ("mean_min_ttc_s", "minTTC", "{:.2f}"),
    ("ttc_within_bound_pct", "ttc%", "{:.1f}"),
    ("drivable_compliance_pct", "drive%", "{:.1f}"),
    ("mean_progress_m", "prog_m", "{:.1f}"),
    ("mean_progress_ratio", "prog_r", "{:.2f}"),
    ("speed_limit_compliance", "speed", "{:.3f}"),
    ("comfortable_pct", "comf%", "{:.1f}"),
    ("frozen_pct", "frozen%", "{:.1f}"),
)


def is_failed(record: Mapping[str, Any]) -> bool:
    return bool(record.get("error"))


def _metric(record: Mapping[str, Any], key: str) -> float:
    metrics = record.get("metrics")
    if not isinstance(metrics, Mapping) or key not in metrics:
        raise ValueError(
            f"episode {record.get('family')!r} seed {record.get('seed')!r}: "
            f"metrics lack {key!r} although the episode did not fail"
        )
    return float(metrics[key])


def _mean(values: Sequence[float], scale: float = 1.0) -> float | None:
    return scale * sum(values) / len(values) if values else None


def summary_row(name: str, records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One summary row over `records` (failed ones counted, never averaged)."""
    ok = [r for r in records if not is_failed(r)]

    def col(key: str) -> list[float]:
        return [_metric(r, key) for r in ok]

    km = sum(col("progress")) / 1000.0
    collisions = sum(col("at_fault_collisions"))
    return {
        "family": name,
        "episodes": len(records),
        "failed": len(records) - len(ok),
        "score_mean": _mean(col(SCORE_KEY)),
        "at_fault_collision_rate_pct": _mean([float(v > 0) for v in col("at_fault_collisions")], 100.0),
        "at_fault_collisions_per_km": collisions / km if km > 0 else None,
        "mean_min_ttc_s": _mean(col("min_ttc")),
        "ttc_within_bound_pct": _mean(col("ttc_within_bound"), 100.0),
        "drivable_compliance_pct": _mean(col("drivable_area_compliance"), 100.0),
        "mean_progress_m": _mean(col("progress")),
        "mean_progress_ratio": _mean(col("progress_ratio")),
        "speed_limit_compliance": _mean(col("speed_limit_compliance")),
        "comfortable_pct": _mean(col("comfortable"), 100.0),
        "frozen_pct": _mean(col("frozen_fraction"), 100.0),
    }


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """{"families": [row per family, sorted by name], "overall": row over all episodes}."""
    records = list(records)
    by_family: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        if "family" not in r:
            raise ValueError(f"episode record without a 'family': {sorted(r)}")
        by_family.setdefault(str(r["family"]), []).append(r)
    return {
        "families": [summary_row(name, by_family[name]) for name in sorted(by_family)],
        "overall": summary_row("all", records),
    }


def episode_rows(records: Sequence[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Flat rows (record keys then metrics) and their columns, metrics in first-seen order."""
    metric_keys: dict[str, None] = {}
    for r in records:
        metric_keys.update(dict.fromkeys(r.get("metrics") or {}))
    rows = []
    for r in records:
        row = {k: r.get(k) for k in RECORD_KEYS}
        row["error"] = row["error"] or None
        row.update(r.get("metrics") or {})
        rows.append(row)
    return rows, [*RECORD_KEYS, *metric_keys]


def write_episodes_csv(records: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """One row per episode, failed ones included (error set, metrics empty)."""
    rows, columns = episode_rows(records)
    write_csv(rows, columns, path)


def write_summary_json(summary: Mapping[str, Any], path: str | Path) -> None:
    """The summary (and anything the caller adds to it) as JSON; undefined values are null."""
    write_json(path, summary)


def write_summary_csv(summary: Mapping[str, Any], path: str | Path) -> None:
    """Family rows then the overall row."""
    rows = [*summary["families"], summary["overall"]]
    write_csv(rows, [key for key, _, _ in COLUMNS], path)


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def format_table(summary: Mapping[str, Any]) -> str:
    """The summary as an aligned text table, families then a rule and the overall row."""
    headers = [header for _, header, _ in COLUMNS]
    rows = [[_cell(row.get(key), fmt) for key, _, fmt in COLUMNS] for row in (*summary["families"], summary["overall"])]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    rule = "-" * len(line(headers))
    body = [line(r) for r in rows[:-1]]
    return "\n".join([line(headers), rule, *body, rule, line(rows[-1])])
