"""The closed-loop report: a Markdown summary, plots and a rendered episode, from `comparison.json`.

<out>/report/report.md          tables (stack, ablation, baselines, diagnostics; per family and, where
                                a family holds several, per scenario; sigma sweep) and the targets
<out>/report/sigma_tradeoff.png collision rate, min TTC, progress and frozen time against sigma
<out>/report/sigma_pareto.png   progress against at-fault collisions, one point per sigma, with the
                                argmax ablation and the rule-based baselines
<out>/report/metrics.png        the policies side by side
<out>/report/episode.png        a still of a rendered stack episode (sensor raster, detections with
                                covariance ellipses, forecast modes by weight, candidates by risk)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from core.io import atomic_path, atomic_write_text  # noqa: E402
from stack.bootstrap import episode_metrics  # noqa: E402

REPORT_DIR = "report"
POLICY_COLUMNS = (
    ("score_mean", "score", "{:.3f}"),
    ("at_fault_collision_rate_pct", "at-fault collision %", "{:.1f}"),
    ("mean_min_ttc_s", "min TTC (s)", "{:.2f}"),
    ("mean_progress_m", "progress (m)", "{:.1f}"),
    ("mean_progress_ratio", "progress ratio", "{:.2f}"),
    ("frozen_pct", "frozen %", "{:.1f}"),
    ("comfortable_pct", "comfortable %", "{:.1f}"),
)
SWEEP_COLUMNS = (
    ("sigma", "sigma", "{:g}"),
    ("score", "score", "{:.3f}"),
    ("collision_rate_pct", "collision %", "{:.1f}"),
    ("min_ttc_s", "min TTC (s)", "{:.2f}"),
    ("progress_m", "progress (m)", "{:.1f}"),
    ("frozen_pct", "frozen %", "{:.1f}"),
)


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return fmt.format(value)


def markdown_table(rows: list[dict[str, Any]], columns: tuple, first: tuple[str, str] | None = None) -> str:
    headers = ([first[1]] if first else []) + [header for _, header, _ in columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = ([str(row[first[0]])] if first else []) + [_cell(row.get(k), fmt) for k, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def policy_rows(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    """Stack, ablation and baselines (the sweep has its own table)."""
    return [
        {"policy": label, **row} for label, row in comparison["overall"].items() if not label.startswith("stack-sigma")
    ]


def family_table(comparison: dict[str, Any]) -> str:
    """Score / at-fault collision % per family (rows) and policy (columns), the sweep left out."""
    labels = [r["policy"] for r in policy_rows(comparison)]
    by_label = {label: {row["family"]: row for row in comparison["families"][label]} for label in labels}
    families = sorted({family for rows in by_label.values() for family in rows})
    lines = ["| family | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]
    for family in families:
        cells = [_family_cell(by_label[label].get(family)) for label in labels]
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scenario_table(comparison: dict[str, Any], out: Path) -> str | None:
    """Score / at-fault collision % per scenario, from each row's episodes.csv; None when every family is one
    scenario (the family table says it all). Suites such as `hard-v2` put several scenarios in one family."""
    labels = [r["policy"] for r in policy_rows(comparison)]
    episodes = {label: episode_metrics(out / label / "episodes.csv") for label in labels}
    scenarios = sorted({scenario for rows in episodes.values() for scenario, _ in rows})
    families = {row["family"] for rows in comparison["families"].values() for row in rows}
    if len(scenarios) <= len(families):
        return None
    lines = ["| scenario | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]
    for scenario in scenarios:
        cells = []
        for label in labels:
            mine = [m for (name, _), m in episodes[label].items() if name == scenario]
            cells.append(_scenario_cell(mine))
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _scenario_cell(episodes: list[dict[str, float]]) -> str:
    if not episodes:
        return "n/a"
    score = sum(e["score"] for e in episodes) / len(episodes)
    collided = 100.0 * sum(e["collided"] for e in episodes) / len(episodes)
    return f"{score:.2f} / {collided:.0f}"


def _family_cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "n/a"
    return f"{_cell(row['score_mean'], '{:.2f}')} / {_cell(row['at_fault_collision_rate_pct'], '{:.0f}')}"


def bootstrap_lines(comparison: dict[str, Any]) -> list[str]:
    """One line per paired difference (`stack.bootstrap`)."""
    lines = []
    for name, diff in comparison.get("bootstrap", {}).items():
        score, coll = diff["score"], diff["collision_pct"]
        if score["mean"] is not None:
            lines.append(f"- {name}: score {_interval(score, '+.3f')}, at-fault collisions {_interval(coll, '+.1f')} "
                         f"points ({score['episodes']} paired episodes, 95 % bootstrap)")  # fmt: skip
    return lines


def _interval(stats: dict[str, Any], spec: str) -> str:
    """ "mean [low, high]" of a paired bootstrap interval."""
    return f"{stats['mean']:{spec}} [{stats['low']:{spec}}, {stats['high']:{spec}}]"


def text_table(comparison: dict[str, Any]) -> str:
    """The policy table for a terminal."""
    rows = policy_rows(comparison)
    headers = ["policy"] + [h for _, h, _ in POLICY_COLUMNS]
    cells = [[r["policy"]] + [_cell(r.get(k), f) for k, _, f in POLICY_COLUMNS] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)))]
    for c in cells:
        lines.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(c, widths, strict=True))))
    return "\n".join(lines)


def plot_sigma_tradeoff(sweep: list[dict[str, Any]], path: Path) -> Path:
    sigma = [r["sigma"] for r in sweep]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    for ax, (key, label) in zip(
        axes,
        (
            ("collision_rate_pct", "at-fault collision %"),
            ("min_ttc_s", "mean min TTC (s)"),
            ("progress_m", "progress (m)"),
            ("frozen_pct", "frozen % of time"),
        ),  # fmt: skip
        strict=True,
    ):
        ax.plot(sigma, [np.nan if r[key] is None else r[key] for r in sweep], marker="o")
        ax.set_xlabel("sigma (risk sensitivity)")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def plot_pareto(comparison: dict[str, Any], path: Path) -> Path:
    """Progress against at-fault collision rate: one point per sigma of the sweep (joined in sigma order),
    and the argmax ablation and the rule-based baselines as reference points."""
    sweep = comparison["sweep"]
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    x = [r["collision_rate_pct"] for r in sweep]
    y = [r["progress_m"] for r in sweep]
    ax.plot(x, y, marker="o", color="tab:blue", label="stack, sigma sweep")
    for r in sweep:
        ax.annotate(f"σ={r['sigma']:g}", (r["collision_rate_pct"], r["progress_m"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=8)  # fmt: skip
    for label, marker in (("stack-argmax", "x"), ("pdm", "s"), ("pdm-gt", "^")):
        row = comparison["overall"].get(label)
        if row is not None:
            ax.scatter([row["at_fault_collision_rate_pct"]], [row["mean_progress_m"]], marker=marker, s=50, label=label)
    ax.set_xlabel("at-fault collision rate (% of episodes)")
    ax.set_ylabel("mean progress (m)")
    ax.set_title("risk sensitivity: progress against collisions")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def sweep_lines(comparison: dict[str, Any]) -> list[str]:
    """The sweep's paired steps (`stack.bootstrap.sweep_differences`) and its checks."""
    lines = []
    for step in comparison.get("sweep_steps", []):
        coll, prog = step["collision_pct"], step["progress_m"]
        if coll["mean"] is not None:
            lines.append(f"- {step['row']} minus {step['reference']}: at-fault collisions "
                         f"{_interval(coll, '+.1f')} points, progress {_interval(prog, '+.1f')} m "
                         f"({coll['episodes']} paired episodes)")  # fmt: skip
    checks = comparison.get("sweep_checks", {})
    if checks:
        lines.append("")
    for name, check in checks.items():
        if "op" in check:
            lines.append(_target_line(name, check))
        elif "rises" in check:
            status = {True: "met", None: "not measured"}.get(
                check["met"], f"NOT met (rises beyond noise: {', '.join(check['rises'])})"
            )
            lines.append(f"- {name.replace('_', ' ')}: **{status}**")
        else:
            lines.append(f"- {name.replace('_', ' ')}: {_cell(check['value'], '{:g}')}")
    return lines


def plot_metrics(comparison: dict[str, Any], path: Path) -> Path:
    rows = policy_rows(comparison)
    keys = (
        ("score_mean", "score"),
        ("at_fault_collision_rate_pct", "collision %"),
        ("mean_progress_ratio", "progress ratio"),
    )
    fig, axes = plt.subplots(1, len(keys), figsize=(12, 3.2))
    for ax, (key, label) in zip(axes, keys, strict=True):
        values = [np.nan if r.get(key) is None else r[key] for r in rows]
        ax.bar(range(len(rows)), values, color=["tab:blue", "tab:orange", "tab:gray", "tab:green"][: len(rows)])
        ax.set_xticks(range(len(rows)), [r["policy"] for r in rows], rotation=20)
        ax.set_title(label)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def episode_still(videos: Path, path: Path) -> Path | None:
    """The middle frame of the first rendered stack episode, as PNG (None when none was rendered)."""
    gifs = sorted(videos.glob("*.gif"))
    if not gifs:
        return None
    with Image.open(gifs[0]) as gif:
        gif.seek(gif.n_frames // 2)
        frame = gif.convert("RGB")
    with atomic_path(path) as tmp:
        frame.save(tmp, format="PNG")
    return path


def write_report(comparison: dict[str, Any], out: Path) -> Path:
    """Write the report folder under `out`; returns report.md."""
    folder = out / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    plot_metrics(comparison, folder / "metrics.png")
    sweep = comparison["sweep"]
    if sweep:
        plot_sigma_tradeoff(sweep, folder / "sigma_tradeoff.png")
        plot_pareto(comparison, folder / "sigma_pareto.png")
    still = episode_still(out / "stack" / "videos", folder / "episode.png")
    scenarios = scenario_table(comparison, out)
    cfg = comparison["config"]
    parts = [
        "# Closed-loop evaluation of the stack",
        "",
        f"Suite `{cfg['suite']}`, {cfg['seeds']} seeds per scenario from seed {cfg['first_seed']}, weights "
        f"`{cfg['weights']}`, sigma {comparison['sigma']:g}; the stack plans every {cfg['plan_every']} frame(s) "
        "and perceives every frame. All policies drive the same episodes; `pdm` reads the noisy object sensor "
        "thresholded at 0.5, `pdm-gt` ground truth (the upper reference).",
        "",
        markdown_table(policy_rows(comparison), POLICY_COLUMNS, ("policy", "policy")),
        "",
        "`stack-gt` and `stack-objects` are the stack's tracker, predictor and planner fed by ground truth and by "
        "the noisy object sensor instead of its detector; `pdm-stack` is the rule-based planner on the stack's "
        "own perception, thresholded (tracks with existence >= 0.5, their most likely mode).",
        "",
        "## Per family (score / at-fault collision %)",
        "",
        family_table(comparison),
        "",
        *(["## Per scenario (score / at-fault collision %)", "", scenarios, ""] if scenarios else []),
        "## Paired differences (row minus reference, per episode)",
        "",
        *(bootstrap_lines(comparison) or ["(no reference rows)"]),
        "",
        "## Sigma sweep",
        "",
        markdown_table(sweep, SWEEP_COLUMNS) if sweep else "(no sweep)",
        "",
        *sweep_lines(comparison),
        "",
        "![sigma trade-off](sigma_tradeoff.png)" if sweep else "",
        "",
        "![progress against collisions](sigma_pareto.png)" if sweep else "",
        "",
        "![metrics](metrics.png)",
        "",
        "## Targets",
        "",
        *[_target_line(name, check) for name, check in comparison["targets"].items()],
        "",
    ]
    if still is not None:
        parts += [
            "## A rendered episode",
            "",
            "Left: the world. Right: the sensor raster with detections (1- and 2-sigma ellipses, brighter = more "
            "likely), forecast modes (brighter = heavier) and the plan's candidates (brighter = lower risk).",
            "",
            "![episode](episode.png)",
            "",
        ]
    path = folder / "report.md"
    atomic_write_text(path, "\n".join(parts))
    return path


def _target_line(name: str, check: dict[str, Any]) -> str:
    status = {True: "met", False: "NOT met", None: "not measured"}[check["met"]]
    value, bound = _cell(check["value"], "{:.3f}"), _cell(check["bound"], "{:.3f}")
    return f"- {name.replace('_', ' ')}: {value} {check['op']} {bound}: **{status}**"
