"""A study's rows summarised: mean ± std per (init, fraction), as CSV text and as a Markdown table."""

from __future__ import annotations

import csv
import io
import math
import statistics
from typing import Any


def summarise(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """Mean and sample std (0 for one run) of ``keys`` per (fraction, init), NaN values left out; inits in the
    order they first appear in ``rows``."""
    inits = list(dict.fromkeys(row["init"] for row in rows))
    summary = []
    for fraction in sorted({row["fraction"] for row in rows}):
        for init in inits:
            group = [row for row in rows if row["init"] == init and row["fraction"] == fraction]
            entry: dict[str, Any] = {"init": init, "fraction": fraction, "runs": len(group)}
            for key in keys:
                values = [row[key] for row in group if not math.isnan(row[key])]
                entry[f"{key}_mean"] = statistics.fmean(values) if values else math.nan
                entry[f"{key}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            summary.append(entry)
    return summary


def format_summary(summary: list[dict[str, Any]], keys: tuple[str, ...]) -> str:
    """A Markdown table: one row per (fraction, init), ``mean ± std`` per metric."""
    lines = ["| fraction | init | runs | " + " | ".join(keys) + " |", "|---|---|---|" + "---|" * len(keys)]
    for row in summary:
        cells = [f"{row[f'{key}_mean']:.3f} ± {row[f'{key}_std']:.3f}" for key in keys]
        lines.append(f"| {row['fraction']:g} | {row['init']} | {row['runs']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def csv_text(rows: list[dict[str, Any]]) -> str:
    """``rows`` (dicts with the same keys) as CSV text with a header."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
