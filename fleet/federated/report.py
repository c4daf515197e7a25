"""The per-round comparison of FedAvg with the centralised baselines at the same sample count."""

from __future__ import annotations

from typing import Any

from fleet.federated.config import HEADLINE

# The table's runs: key prefix in the rows, column label.
COLUMNS = (("federated", "fed"), ("centralised", "cen"), ("centralised_rounds", "cen-r"))


def comparison(
    federated: list[dict[str, Any]],
    central: list[dict[str, Any]] | None,
    central_rounds: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Per round: the federated and (when run) centralised and schedule-matched centralised (`centralised_rounds`)
    headline metrics at the same sample count."""
    baselines = {"centralised": central, "centralised_rounds": central_rounds}
    by_round = {name: {row["round"]: row for row in rows or []} for name, rows in baselines.items()}
    table = []
    for entry in federated:
        row = {"round": entry["round"], "samples": entry["samples"]}
        row.update({f"federated_{m}": entry["validation"][m] for m in HEADLINE})
        for name, rows in by_round.items():
            if entry["round"] in rows:
                row.update({f"{name}_{m}": rows[entry["round"]]["validation"][m] for m in HEADLINE})
        table.append(row)
    return table


def format_row(row: dict[str, Any]) -> str:
    """One line of the comparison table (`table_header`); a run not made shows '-'."""
    values = [row.get(f"{name}_{m}") for name, _ in COLUMNS for m in HEADLINE]
    cells = [f"{row['round']:>5}", f"{row['samples']:>8}",
             *(f"{v:>12.3f}" if v is not None else f"{'-':>12}" for v in values)]  # fmt: skip
    return " ".join(cells)


def table_header() -> str:
    labels = [f"{label} {metric}" for _, label in COLUMNS for metric in ("NLL", "minADE")]
    return " ".join([f"{'round':>5}", f"{'samples':>8}", *(f"{label:>12}" for label in labels)])
