"""A weights file for source-balanced sampling: CSV rows ``source,weight`` (header optional)."""

from __future__ import annotations

import csv
from pathlib import Path

from sonofm.errors import SonofmError


def read_source_weights(path: str | Path, names: list[str]) -> list[float]:
    """One weight per source of ``names`` (in that order), from ``path``. A row's ``source`` is a source's name as
    given (a ``--data`` folder) or its last path component when no other source shares it (``liver`` for
    ``/archive/liver``); every source needs a
    row, weights are >= 0 and not all 0. SonofmError naming the file and the row otherwise."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except OSError as error:
        raise SonofmError(f"cannot read --balance weights file {path}: {error.strerror}") from None
    if rows and [cell.strip().lower() for cell in rows[0]] == ["source", "weight"]:
        rows = rows[1:]
    base_names = [Path(name).name for name in names]
    lookup = {base: index for index, base in enumerate(base_names) if base_names.count(base) == 1}
    lookup |= {name: index for index, name in enumerate(names)}
    weights: list[float | None] = [None] * len(names)
    for line, row in enumerate(rows, start=1):
        if len(row) != 2:
            raise SonofmError(f"{path}: row {line} must be `source,weight`, got {','.join(row)!r}")
        name, value = row[0].strip(), row[1].strip()
        if name not in lookup:
            raise SonofmError(f"{path}: row {line} names source {name!r}; the sources are {', '.join(names)}")
        try:
            weight = float(value)
        except ValueError:
            weight = -1.0
        if not weight >= 0:
            raise SonofmError(f"{path}: row {line} weight {value!r} must be a number >= 0")
        weights[lookup[name]] = weight
    missing = [name for name, weight in zip(names, weights) if weight is None]
    if missing:
        raise SonofmError(f"{path} has no weight for source {', '.join(missing)}")
    if not any(weights):
        raise SonofmError(f"{path}: every weight is 0")
    return [float(weight) for weight in weights]
