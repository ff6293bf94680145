"""Confusion matrices as CSV files: ``true\\predicted,<class>,...`` header, one row of counts per true class."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from sonofm.atomic import atomic_write_text
from sonofm.errors import SonofmError

CORNER = "true\\predicted"


def write_confusion_csv(matrix: torch.Tensor, classes: list[str], path: str | Path) -> Path:
    """Write the (C, C) counts ``matrix`` (rows true, columns predicted) atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([CORNER, *classes])
    for name, row in zip(classes, matrix.tolist(), strict=True):
        writer.writerow([name, *(int(count) for count in row)])
    return atomic_write_text(path, buffer.getvalue())


def read_confusion_csv(path: str | Path, classes: list[str]) -> torch.Tensor:
    """The (C, C) int64 counts of a file written by :func:`write_confusion_csv` for exactly ``classes``."""
    path = Path(path)
    if not path.is_file():
        raise SonofmError(f"confusion matrix file not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    expected = [CORNER, *classes]
    if not rows or rows[0] != expected or [row[0] for row in rows[1:]] != classes:
        raise SonofmError(f"{path} is not a confusion matrix of the classes {', '.join(classes)}")
    return torch.tensor([[int(count) for count in row[1:]] for row in rows[1:]], dtype=torch.long)
