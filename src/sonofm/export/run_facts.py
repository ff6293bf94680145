"""What a model card says of a finished run, read from its folder: config, test metrics, split sizes, data licence."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sonofm.errors import SonofmError, first_line
from sonofm.runs.run_folder import RunFolder

LICENCE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "LICENCE.txt", "LICENCE.md", "COPYING")
LICENCE_COLUMNS = ("license", "licence")


@dataclass(frozen=True)
class SplitSize:
    """Images and groups (patients, videos) of one split."""

    images: int
    groups: int


@dataclass(frozen=True)
class RunFacts:
    """A finished run as its model card describes it; ``config`` is its resolved ``config.yaml``, ``metrics`` its
    ``metrics.json``, ``train_labels`` the images per label (class index or ``class`` column) of the training split,
    ``data_licence`` what the data set says of its licence (None: nothing found)."""

    run: Path
    config: dict[str, Any]
    metrics: dict[str, float]
    splits: dict[str, SplitSize]
    train_labels: dict[str, int]
    data_licence: str | None


def read_run_facts(run: RunFolder) -> RunFacts:
    """The facts of a finished run (``metrics.json``, ``config.yaml`` and ``split.csv`` present); SonofmError naming
    the file that is missing or unreadable."""
    if not run.is_finished:
        raise SonofmError(f"run {run.path} is not finished (no metrics.json); finish it first (rerun its command)")
    config = _read_yaml(run.config)
    metrics = _read_json(run.metrics)
    splits, train_labels = _split_sizes(run.split)
    data = config.get("data")
    return RunFacts(run.path, config, metrics, splits, train_labels,
                    data_licence(Path(data)) if isinstance(data, str) and data else None)


def data_licence(data: Path) -> str | None:
    """The licence a data folder states: the first line of its LICENSE file, else the values of a ``license``
    column of its ``labels.csv`` with their image counts; None when neither is there (or the folder has moved)."""
    for name in LICENCE_FILES:
        if (data / name).is_file():
            lines = [line.strip() for line in (data / name).read_text(encoding="utf-8", errors="replace").splitlines()]
            first = next((line for line in lines if line), "")
            return f"{first[:200]} ({name} of the data set)" if first else None
    labels = data / "labels.csv"
    if not labels.is_file():
        return None
    with labels.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.DictReader(handle)
        column = next((name for name in reader.fieldnames or [] if name.strip().lower() in LICENCE_COLUMNS), None)
        if column is None:
            return None
        counts = Counter((row.get(column) or "").strip() or "not stated" for row in reader)
    return ", ".join(f"{value} ({count} images)" for value, count in counts.most_common())


def _split_sizes(path: Path) -> tuple[dict[str, SplitSize], dict[str, int]]:
    """Per split of ``split.csv`` (``name,split,group,label``): its size; and the training images per label."""
    if not path.is_file():
        raise SonofmError(f"run {path.parent} has no split.csv; the model card needs its split sizes")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"split", "group", "label"} <= set(rows[0]):
        raise SonofmError(f"{path} is not a sonofm split file (header name,split,group,label)")
    sizes = {}
    for split in dict.fromkeys(row["split"] for row in rows):
        members = [row for row in rows if row["split"] == split]
        groups = {row["group"] or row["name"] for row in members}
        sizes[split] = SplitSize(len(members), len(groups))
    labels = Counter(row["label"] for row in rows if row["split"] == "train" and row["label"])
    return sizes, dict(sorted(labels.items()))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise SonofmError(f"cannot read {path}: {first_line(error)}") from None
    if not isinstance(data, dict):
        raise SonofmError(f"{path} must hold key: value pairs, found a {type(data).__name__}")
    return data


def _read_json(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise SonofmError(f"cannot read {path}: {first_line(error)}") from None
    if not isinstance(data, dict):
        raise SonofmError(f"{path} must hold a JSON object of metrics, found a {type(data).__name__}")
    return data
