"""Paired differences between initialisations: each init against a reference on the same (seed, fold) runs, with a
95 % t confidence interval of the mean difference."""

from __future__ import annotations

import math
import statistics
from typing import Any

from scipy import stats

LEVEL = 0.95


def paired_differences(rows: list[dict[str, Any]], keys: tuple[str, ...], reference: str) -> list[dict[str, Any]]:
    """One entry per (fraction, init other than ``reference``, metric): the differences init − reference of the
    runs sharing a (seed, fold), their count, mean, sample std and 95 % confidence interval of the mean
    (``t.ppf(0.975, n - 1) * sd / sqrt(n)``; NaN with one pair). Pairs where either value is NaN are left out."""
    inits = [init for init in dict.fromkeys(row["init"] for row in rows) if init != reference]
    entries = []
    for fraction in sorted({row["fraction"] for row in rows}):
        at_fraction = [row for row in rows if row["fraction"] == fraction]
        baseline = {_pair(row): row for row in at_fraction if row["init"] == reference}
        for init in inits:
            for key in keys:
                differences = [row[key] - baseline[_pair(row)][key] for row in at_fraction
                               if row["init"] == init and _pair(row) in baseline
                               and not math.isnan(row[key]) and not math.isnan(baseline[_pair(row)][key])]
                entries.append({"init": init, "reference": reference, "fraction": fraction, "metric": key,
                                **mean_with_interval(differences)})
    return entries


def mean_with_interval(values: list[float]) -> dict[str, float]:
    """``pairs``, ``mean``, ``std`` (sample) and the 95 % t interval ``ci_low``, ``ci_high`` of the mean of
    ``values``; std and interval are NaN for fewer than two values (mean too for none)."""
    count = len(values)
    mean = statistics.fmean(values) if values else math.nan
    if count < 2:
        return {"pairs": count, "mean": mean, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    std = statistics.stdev(values)
    half = float(stats.t.ppf(0.5 + LEVEL / 2, count - 1)) * std / math.sqrt(count)
    return {"pairs": count, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


def _pair(row: dict[str, Any]) -> tuple[int, int | None]:
    return row["seed"], row.get("fold")
