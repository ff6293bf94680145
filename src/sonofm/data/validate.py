"""Decode every file of a dataset once and report all problems, so bad data fails before training starts."""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sonofm.data.image_io import read_image, read_mask, unique_ids
from sonofm.data.records import SPLITS, DatasetIndex, Sample
from sonofm.data.splits import group_key
from sonofm.errors import SonofmError
from sonofm.progress import progress_bar

UNSPLIT = "unsplit"
"""Split name reported for samples of a layout without its own splits."""
NAME_COLUMN = "name"
"""The labels.csv column that ties a row to its image; in a sample's ``meta`` only when the image has a row."""


@dataclass
class DatasetReport:
    """Summary of a checked dataset.

    Attributes:
        counts: split (``train``/``val``/``test`` or ``unsplit``) -> class name -> number of images; for
            segmentation, the number of masks containing that class id.
        images: split -> number of images.
        size_min, size_max: smallest and largest image width and height ``(W, H)`` (separately), if any decoded.
        mask_values: class ids found in the readable masks.
        problems: every problem found, each naming its file; an empty list means the dataset is usable.
        warnings: findings that do not block training (pixel-identical images in different groups).
    """

    index: DatasetIndex
    counts: dict[str, dict[str, int]]
    images: dict[str, int]
    size_min: tuple[int, int] | None
    size_max: tuple[int, int] | None
    mask_values: list[int]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def format(self) -> str:
        """Multi-line text for printing: layout, classes, groups, counts table, sizes, mask values, problems."""
        index = self.index
        groups = len({group_key(s) for s in index.samples})
        grouping = f"column '{index.group_column}'" if index.group_column else "none; each image is its own group"
        lines = [
            f"dataset:     {index.root}",
            f"layout:      {index.layout}",
            f"task:        {index.task}",
            f"classes:     {', '.join(index.classes)}",
            f"groups:      {groups} ({grouping})",
            "counts:" + ("  (segmentation: masks containing each class)" if index.task == "seg" else ""),
            *("  " + line for line in self._count_table()),
        ]
        if self.size_min and self.size_max:
            lines.append(f"image size:  min {self.size_min[0]}x{self.size_min[1]}, "
                         f"max {self.size_max[0]}x{self.size_max[1]} (W x H)")
        if index.task == "seg":
            lines.append(f"mask values: {', '.join(map(str, self.mask_values)) or 'none read'}")
        lines += [f"warning: {warning}" for warning in self.warnings]
        lines += [f"problem: {problem}" for problem in self.problems]
        return "\n".join(lines)

    def _count_table(self) -> list[str]:
        header = ["split", "images", *self.index.classes]
        rows = [[split, str(self.images[split]), *(str(self.counts[split].get(c, 0)) for c in self.index.classes)]
                for split in self.images]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        return ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in [header, *rows]]


@dataclass
class _Inspection:
    """What decoding one sample found."""

    size: tuple[int, int] | None = None
    digest: str | None = None
    mask_ids: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def check_dataset(index: DatasetIndex, progress: bool = False, workers: int | None = None) -> DatasetReport:
    """Decode every image and mask of ``index`` (in a thread pool) and collect counts and problems.

    Problems: unreadable or truncated images and masks, missing masks, mask size != image size, mask values outside
    0..num_classes-1, RGB masks, missing labels or groups (an image without its labels.csv row where the layout needs
    one), labels.csv rows that match no image or repeat a name, labels.csv classes that contradict the folder,
    duplicate names and groups split across the layout's own splits. ``progress`` shows a tqdm bar on stderr.
    """
    workers = workers or min(8, (os.cpu_count() or 1) + 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        inspections = list(progress_bar(pool.map(lambda s: _inspect(s, index), index.samples), total=len(index.samples),
                                desc="checking", unit="img", disable=not progress))
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    images: Counter[str] = Counter()
    for sample, inspection in zip(index.samples, inspections):
        split = sample.split or UNSPLIT
        images[split] += 1
        if sample.label is not None:
            counts[split][index.classes[sample.label]] += 1
        counts[split].update(index.classes[i] for i in inspection.mask_ids if i < index.num_classes)
    sizes = [inspection.size for inspection in inspections if inspection.size]
    order = [split for split in (*SPLITS, UNSPLIT) if split in images]
    return DatasetReport(
        index=index,
        counts={split: dict(counts[split]) for split in order},
        images={split: images[split] for split in order},
        size_min=(min(w for w, _ in sizes), min(h for _, h in sizes)) if sizes else None,
        size_max=(max(w for w, _ in sizes), max(h for _, h in sizes)) if sizes else None,
        mask_values=sorted({i for inspection in inspections for i in inspection.mask_ids}),
        problems=[p for inspection in inspections for p in inspection.problems]
        + index.row_problems
        + _duplicate_names(index.samples)
        + _groups_across_splits(index),
        warnings=[*([index.grouping_hint] if index.grouping_hint else []),
                  *_identical_images(index.samples, inspections)],
    )


def assert_valid(index: DatasetIndex, progress: bool = False) -> DatasetReport:
    """Check ``index`` and raise :class:`SonofmError` naming the first problems (and their count) if any."""
    report = check_dataset(index, progress=progress)
    if report.problems:
        shown = "; ".join(report.problems[:3])
        more = f" (and {len(report.problems) - 3} more)" if len(report.problems) > 3 else ""
        raise SonofmError(f"{len(report.problems)} problems in dataset {index.root}: {shown}{more}; "
                          f"run 'sonofm data check {index.root}' to list them all")
    return report


def _inspect(sample: Sample, index: DatasetIndex) -> _Inspection:
    found = _Inspection()
    try:
        image = read_image(sample.image)
        found.size = (image.shape[1], image.shape[0])
        found.digest = hashlib.blake2b(image.tobytes() + str(image.shape).encode(), digest_size=16).hexdigest()
    except SonofmError as error:
        found.problems.append(str(error))
    if index.task == "cls":
        found.problems += _label_problems(sample, index)
    else:
        found.problems += _mask_problems(sample, index, found)
    if index.group_column and sample.group is None:
        found.problems.append(_group_problem(sample, index.group_column))
    return found


def _group_problem(sample: Sample, column: str) -> str:
    """Why ``sample`` has no group: no labels.csv row at all, or an empty cell in the group column."""
    if NAME_COLUMN not in sample.meta:
        return f"no row in labels.csv for image {sample.image} (its group column '{column}' needs one)"
    return f"no value in group column '{column}' of labels.csv for image {sample.image}"


def _label_problems(sample: Sample, index: DatasetIndex) -> list[str]:
    if sample.label is None:
        missing = "no row" if NAME_COLUMN not in sample.meta else "an empty 'class'"
        return [f"no class for image {sample.image} ({missing} in labels.csv)"]
    listed = sample.meta.get("class")
    if listed and listed != index.classes[sample.label]:
        return [f"labels.csv says class '{listed}' but the folder says '{index.classes[sample.label]}': {sample.image}"]
    return []


def _mask_problems(sample: Sample, index: DatasetIndex, found: _Inspection) -> list[str]:
    if sample.mask is None or not sample.mask.is_file():
        return [f"missing mask for image {sample.image} (expected {sample.mask})"]
    try:
        mask = read_mask(sample.mask)
    except SonofmError as error:
        return [str(error)]
    problems = []
    mask_size = (mask.shape[1], mask.shape[0])
    if found.size and mask_size != found.size:
        problems.append(f"mask size {mask_size[0]}x{mask_size[1]} != image size {found.size[0]}x{found.size[1]}: "
                        f"{sample.mask}")
    found.mask_ids = unique_ids(mask)
    outside = [i for i in found.mask_ids if i >= index.num_classes]
    if outside:
        problems.append(f"mask values {outside} outside the class range 0..{index.num_classes - 1}: {sample.mask}")
    return problems


def _duplicate_names(samples: list[Sample]) -> list[str]:
    """Names (file stems) that are ambiguous: the same file listed twice, two files with one stem in a folder, or
    one stem in several folders while labels.csv rows are joined by stem."""
    joined_by_name = any(sample.meta for sample in samples)
    by_name: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_name[sample.name].append(sample)
    problems = []
    for name, same in by_name.items():
        paths = [s.image for s in same]
        folders = [p.parent for p in paths]
        if len(same) > 1 and (joined_by_name or len(set(paths)) < len(paths) or len(set(folders)) < len(folders)):
            problems.append(f"duplicate name '{name}': {', '.join(map(str, paths))}")
    return problems


def _groups_across_splits(index: DatasetIndex) -> list[str]:
    """Groups that the layout's own splits put in more than one split (a leak between train and test)."""
    if not (index.has_splits and index.group_column):
        return []
    splits_of: dict[str, set[str]] = defaultdict(set)
    for sample in index.samples:
        if sample.group is not None:
            splits_of[sample.group].add(sample.split)
    return [f"group '{group}' (column '{index.group_column}') is in several splits: {', '.join(sorted(splits))}"
            for group, splits in sorted(splits_of.items()) if len(splits) > 1]


def _identical_images(samples: list[Sample], inspections: list[_Inspection]) -> list[str]:
    """Pixel-identical images in different groups (a leak across splits, or a label conflict)."""
    by_digest: dict[str, list[Sample]] = defaultdict(list)
    for sample, inspection in zip(samples, inspections):
        if inspection.digest:
            by_digest[inspection.digest].append(sample)
    return [f"identical pixels in different groups: {', '.join(str(s.image) for s in same)}"
            for same in by_digest.values()
            if len({group_key(s) for s in same}) > 1]
