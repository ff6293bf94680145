"""Grouped, stratified train/val/test splits, label-efficiency subsets, k-fold assignments and their rounds.

A group (patient, video, acquisition: :attr:`Sample.group`) never straddles two splits or folds. Stratification
uses :func:`stratum`: the class for classification; for segmentation the ``class`` column of ``labels.csv`` when
present, else whether the mask is empty. Everything is seeded and reproducible.
"""

from __future__ import annotations

import csv
import os
import tempfile
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from sonofm.data.image_io import read_mask
from sonofm.data.records import SPLITS, DatasetIndex, Sample
from sonofm.errors import SonofmError


def stratum(sample: Sample, classes: Sequence[str] | None = None) -> str:
    """Stratification label of a sample: class name (or index when ``classes`` is None), the ``class`` meta
    column, else ``"empty"`` / ``"foreground"`` from its mask (read from disk)."""
    if sample.label is not None:
        return classes[sample.label] if classes is not None else str(sample.label)
    if sample.meta.get("class"):
        return sample.meta["class"]
    if sample.mask is not None:
        return "foreground" if read_mask(sample.mask).any() else "empty"
    return ""


def group_key(sample: Sample) -> str:
    """The sample's group, or its image path when it has none (then it is a group of its own)."""
    return sample.group if sample.group is not None else str(sample.image)


def split_samples(
    index: DatasetIndex, ratios: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0
) -> dict[str, list[Sample]]:
    """Train/val/test samples (keys :data:`SPLITS`, index order inside each split).

    A layout with its own splits keeps them; when it lacks val or test, that split is carved from its training
    samples (grouped, stratified) with the weights of ``ratios``. Otherwise all samples are split by ``ratios``
    (train, val, test; non-negative, summing to 1) so that no group straddles two splits.
    """
    ratios = _checked_ratios(ratios)
    if not index.has_splits:
        return _grouped_split(index.samples, dict(zip(SPLITS, ratios)), seed)
    splits = {split: [s for s in index.samples if s.split == split] for split in SPLITS}
    missing = [split for split in ("val", "test") if not splits[split]]
    if splits["train"] and missing:
        weights = {split: ratio for split, ratio in zip(SPLITS, ratios) if split == "train" or split in missing}
        splits.update(_grouped_split(splits["train"], weights, seed))
    return splits


def train_fraction(samples: Sequence[Sample], fraction: float, seed: int = 0) -> list[Sample]:
    """A grouped, stratified subset holding about ``fraction`` of ``samples`` (in their order).

    Per stratum, groups are shuffled (seeded) and the shortest prefix closest to the target size is kept, at least
    one group; so with one seed, a smaller fraction's subset is contained in a larger one's.
    """
    if not 0 < fraction <= 1:
        raise SonofmError(f"train fraction must be in (0, 1], got {fraction}")
    groups, group_strata = _groups_and_strata(samples)
    rng = np.random.default_rng(seed)
    kept: set[str] = set()
    for keys in _keys_by_stratum(group_strata).values():
        shuffled = [keys[i] for i in rng.permutation(len(keys))]
        sizes = np.cumsum([len(groups[key]) for key in shuffled])
        count = int(np.argmin(np.abs(sizes - fraction * sizes[-1]))) + 1
        kept.update(shuffled[:count])
    return [sample for sample in samples if group_key(sample) in kept]


def kfold_assignments(samples: Sequence[Sample], k: int, seed: int = 0) -> list[int]:
    """Fold number (0..k-1) of each sample: grouped, stratified folds (sklearn ``StratifiedGroupKFold``)."""
    if k < 2:
        raise SonofmError(f"k-fold needs at least 2 folds, got {k}")
    keys = [group_key(sample) for sample in samples]
    if len(set(keys)) < k:
        raise SonofmError(f"only {len(set(keys))} groups; cannot make {k} grouped folds")
    strata = [stratum(sample) for sample in samples]
    folds = [0] * len(samples)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        for fold, (_, members) in enumerate(splitter.split(np.zeros(len(samples)), strata, keys)):
            for position in members:
                folds[position] = fold
    return folds


def fold_split(samples: Sequence[Sample], folds: Sequence[int], test_fold: int,
               seed: int = 0) -> dict[str, list[Sample]]:
    """Train/val/test samples of one cross-validation round (in ``samples`` order inside each split).

    Test: the samples of fold ``test_fold``. Val: a grouped, stratified share of the other folds' groups, the size of
    one fold (1/(K-1) of them; a quarter when K = 2). Train: the rest. The test fold never feeds model selection.
    """
    num_folds = max(folds) + 1
    rest = [sample for sample, fold in zip(samples, folds, strict=True) if fold != test_fold]
    val_share = 1 / (num_folds - 1) if num_folds > 2 else 0.25
    carved = _grouped_split(rest, {"train": 1 - val_share, "val": val_share}, seed)
    test = [sample for sample, fold in zip(samples, folds, strict=True) if fold == test_fold]
    return {"train": carved["train"], "val": carved["val"], "test": test}


def save_split(splits: dict[str, list[Sample]], path: str | Path) -> None:
    """Write ``name,split,group,label`` rows atomically to the CSV ``path``.

    ``name`` is the image path relative to the deepest folder holding all the images (for example
    ``benign/benign_001.png``); :func:`load_split` finds it again as a path suffix, so the dataset folder may move.
    ``label`` is the class index (classification) or the ``class`` column of labels.csv (segmentation).
    """
    members = [(split, sample) for split in SPLITS for sample in splits.get(split, [])]
    names = _relative_names([sample for _, sample in members])
    rows = [(name, split, sample.group or "", _label_text(sample)) for name, (split, sample) in zip(names, members)]
    _write_csv(Path(path), ("name", "split", "group", "label"), rows)


def load_split(path: str | Path, index: DatasetIndex) -> dict[str, list[Sample]]:
    """Read a split written by :func:`save_split`; refuses names that are not images of ``index``."""
    path = Path(path)
    splits: dict[str, list[Sample]] = {split: [] for split in SPLITS}
    for line_number, sample, split in _read_named_rows(path, index, "split"):
        if split not in splits:
            raise SonofmError(f"{path} line {line_number}: unknown split {split!r} (use {', '.join(SPLITS)})")
        splits[split].append(sample)
    return splits


def save_folds(index: DatasetIndex, folds: Sequence[int], path: str | Path) -> None:
    """Write ``name,fold,group,label`` rows (as :func:`save_split`), one per sample of ``index``, atomically."""
    names = _relative_names(index.samples)
    rows = [(name, fold, sample.group or "", _label_text(sample))
            for name, sample, fold in zip(names, index.samples, folds, strict=True)]
    _write_csv(Path(path), ("name", "fold", "group", "label"), rows)


def load_folds(path: str | Path, index: DatasetIndex) -> list[int]:
    """Fold of each sample of ``index`` from a file written by :func:`save_folds`; every sample needs a row."""
    path = Path(path)
    fold_of: dict[Path, int] = {}
    for line_number, sample, fold in _read_named_rows(path, index, "fold"):
        if not fold.isdigit():
            raise SonofmError(f"{path} line {line_number}: fold must be a number >= 0, got {fold!r}")
        fold_of[sample.image] = int(fold)
    missing = [s.image for s in index.samples if s.image not in fold_of]
    if missing:
        raise SonofmError(f"{path} has no fold for {len(missing)} images of {index.root}, e.g. {missing[0]}")
    return [fold_of[sample.image] for sample in index.samples]


def _label_text(sample: Sample) -> str:
    if sample.label is not None:
        return str(sample.label)
    return sample.meta.get("class", "")


def _relative_names(samples: Sequence[Sample]) -> list[str]:
    """Image paths relative to the deepest folder holding them all, with ``/`` separators."""
    if not samples:
        return []
    common = Path(os.path.commonpath([sample.image.parent for sample in samples]))
    return [sample.image.relative_to(common).as_posix() for sample in samples]


def _read_named_rows(path: Path, index: DatasetIndex, column: str) -> list[tuple[int, Sample, str]]:
    """``(line number, sample, value of column)`` per row of a ``name,<column>,...`` CSV."""
    if not path.is_file():
        raise SonofmError(f"{column} file not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not {"name", column} <= set(reader.fieldnames or []):
            raise SonofmError(f"{path} needs the columns name,{column}; found {','.join(reader.fieldnames or [])}")
        rows = [(number, row["name"], (row[column] or "").strip()) for number, row in enumerate(reader, start=2)]
    by_suffix = _samples_by_path_suffix(index)
    unknown = [name for _, name, _ in rows if len(by_suffix.get(name, ())) != 1]
    if unknown:
        raise SonofmError(
            f"{path} names {len(unknown)} images missing from (or ambiguous in) {index.root}: {', '.join(unknown[:3])}"
            + (", ..." if len(unknown) > 3 else "")
        )
    return [(number, by_suffix[name][0], value) for number, name, value in rows]


def _samples_by_path_suffix(index: DatasetIndex) -> dict[str, list[Sample]]:
    """Every trailing part of each sample's root-relative image path (``a/b/x.png``, ``b/x.png``, ``x.png``)."""
    by_suffix: dict[str, list[Sample]] = defaultdict(list)
    for sample in index.samples:
        parts = sample.image.relative_to(index.root).parts
        for start in range(len(parts)):
            by_suffix["/".join(parts[start:])].append(sample)
    return by_suffix


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Write a CSV via a temporary file in the same folder, then rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", newline="", dir=path.parent, suffix=".tmp", delete=False) as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(handle.name, path)


def _checked_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    if len(ratios) != 3 or any(r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6 or ratios[0] == 0:
        raise SonofmError(f"split ratios must be 3 non-negative numbers (train > 0) summing to 1, got {list(ratios)}")
    return float(ratios[0]), float(ratios[1]), float(ratios[2])


def _groups_and_strata(samples: Sequence[Sample]) -> tuple[dict[str, list[int]], dict[str, str]]:
    """Sample positions per group key, and each group's stratum (the most common among its samples)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for position, sample in enumerate(samples):
        groups[group_key(sample)].append(position)
    strata = [stratum(sample) for sample in samples]
    group_strata = {}
    for key, positions in groups.items():
        counts = Counter(strata[p] for p in positions)
        group_strata[key] = min(counts, key=lambda s: (-counts[s], s))
    return dict(groups), group_strata


def _keys_by_stratum(group_strata: dict[str, str]) -> dict[str, list[str]]:
    """Sorted group keys of each stratum, strata in sorted order."""
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for key in sorted(group_strata):
        by_stratum[group_strata[key]].append(key)
    return {name: by_stratum[name] for name in sorted(by_stratum)}


def _grouped_split(samples: Sequence[Sample], weights: dict[str, float], seed: int) -> dict[str, list[Sample]]:
    """Assign whole groups to the splits of ``weights`` (relative sizes), stratum by stratum.

    Within a stratum, groups are shuffled (seeded), taken largest first, and each goes to the split furthest below
    its target size; splits with weight 0 get nothing.
    """
    groups, group_strata = _groups_and_strata(samples)
    total_weight = sum(weights.values())
    active = [split for split, weight in weights.items() if weight > 0]
    rng = np.random.default_rng(seed)
    split_of: dict[str, str] = {}
    for keys in _keys_by_stratum(group_strata).values():
        shuffled = [keys[i] for i in rng.permutation(len(keys))]
        shuffled.sort(key=lambda key: -len(groups[key]))  # stable: random order among equal sizes
        size = sum(len(groups[key]) for key in keys)
        filled = dict.fromkeys(active, 0)
        for key in shuffled:
            split = max(active, key=lambda s: weights[s] / total_weight * size - filled[s])
            filled[split] += len(groups[key])
            split_of[key] = split
    result: dict[str, list[Sample]] = {split: [] for split in weights}
    for sample in samples:
        result[split_of[group_key(sample)]].append(sample)
    return result
