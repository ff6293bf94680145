"""Every image's fold for a cross-validation study: saved folds when resuming, a fold file, or new grouped folds."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from sonofm.data.records import DatasetIndex
from sonofm.data.splits import group_key, kfold_assignments, load_folds
from sonofm.errors import SonofmError

DEFAULT_FOLDS = 5


def fold_assignment(index: DatasetIndex, saved: Path, resuming: bool, seed: int, folds: int | None,
                    fold_file: str | None = None) -> list[int]:
    """The folds in ``saved`` when resuming; else those of ``fold_file`` (checked against ``folds``), or ``folds``
    (default 5) new grouped, stratified folds seeded by ``seed``."""
    if resuming and saved.is_file():
        return load_folds(saved, index)
    if fold_file is None:
        return kfold_assignments(index.samples, folds or DEFAULT_FOLDS, seed=seed)
    assigned = load_folds(fold_file, index)
    _check_fold_file(fold_file, folds, index, assigned)
    return assigned


def _check_fold_file(path: str, folds: int | None, index: DatasetIndex, assigned: list[int]) -> None:
    """Refuse folds that are not numbered 0..K-1 (none empty), disagree with ``--folds``, or split a group."""
    used = sorted(set(assigned))
    if used != list(range(len(used))) or len(used) < 2:
        raise SonofmError(f"{path}: folds must be numbered 0..K-1 with K >= 2 and none empty, found {used}")
    if folds is not None and folds != len(used):
        raise SonofmError(f"{path} holds {len(used)} folds but --folds is {folds}")
    folds_of_group: dict[str, set[int]] = defaultdict(set)
    for sample, fold in zip(index.samples, assigned, strict=True):
        folds_of_group[group_key(sample)].add(fold)
    split_group = next((key for key, found in folds_of_group.items() if len(found) > 1), None)
    if split_group is not None:
        raise SonofmError(f"{path} puts group {split_group!r} (column {index.group_column}) in folds "
                          f"{sorted(folds_of_group[split_group])}; a group must stay in one fold")
