"""A spread subset of a flat segmentation data set, for quick trials, tests and benchmarks on real data."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path


def copy_flat_subset(source: Path, target: Path, count: int) -> Path:
    """Every k-th ``labels.csv`` row of the flat set ``source`` (``images/NAME.png``, ``masks/NAME.png``), so every
    group stays represented, copied with its image and mask into ``target``; returns ``target``."""
    with (source / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    kept = rows[:: max(1, len(rows) // count)][:count]
    for folder in ("images", "masks"):
        (target / folder).mkdir(parents=True)
        for row in kept:
            shutil.copy(source / folder / f"{row['name']}.png", target / folder / f"{row['name']}.png")
    with (target / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    return target
