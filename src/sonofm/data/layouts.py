"""Detect a dataset folder's layout and index it as a :class:`DatasetIndex`.

Accepted layouts (checked in this order):

* ``samus``: ``ROOT/MainPatient/{train,val,test}.txt`` with lines ``<class id>/<dataset>/<image name>`` (the class
  id may be missing, the extension too) pointing at ``ROOT/<dataset>/img/`` and masks in ``ROOT/<dataset>/label/``.
* ``usfm``: split folders ``ROOT/{train|training_set|trainning_set, val|val_set, test|test_set}/`` holding either
  ``image/`` + ``mask/`` (segmentation, searched recursively) or class folders (classification).
* ``flat``: ``ROOT/images/`` with ``ROOT/masks/`` (segmentation) or a ``class`` column in ``ROOT/labels.csv``.
* ``class_folders``: ``ROOT/<class>/<image>`` (classification).

A mask is matched to its image by the same relative path and stem, with any image extension. An optional
``ROOT/labels.csv`` (column ``name`` = image file stem) gives each sample its ``meta`` row and its group.

Cine loops and multi-frame DICOM files expand into one sample per sampled frame (frame references, see
:mod:`sonofm.data.frames`); the frames of one source share its group and take its labels.csv row (by frame name, else
by source stem) over the DICOM technical metadata (``pixel_size_mm``...). A source that cannot be opened stays one
sample, so validation reports it by name.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from sonofm.data.dicom_io import dicom_case_id, dicom_metadata
from sonofm.data.frames import (
    expand_source,
    frame_count,
    is_dicom_file,
    is_source_file,
    parse_frame_name,
    parse_frame_ref,
    source_of,
)
from sonofm.data.grouping import (
    DICOM_GROUPING,
    FILENAME_PREFIX,
    NO_GROUPING,
    filename_prefix,
    grouping_hint,
    known_group_column,
)
from sonofm.data.image_io import IMAGE_EXTENSIONS, is_image_file, read_mask, unique_ids
from sonofm.data.records import DatasetIndex, Sample
from sonofm.errors import SonofmError
from sonofm.extras import MissingExtra

SPLIT_FOLDERS = {
    "train": ("train", "training_set", "trainning_set"),
    "val": ("val", "val_set"),
    "test": ("test", "test_set"),
}
"""Folder names of the ``usfm`` layout for each split (the reference README spells ``trainning_set``)."""


ACCEPTED_LAYOUTS = (
    "accepted layouts: ROOT/<class>/<images> (classification); ROOT/images/ + ROOT/masks/ (segmentation) or "
    "ROOT/images/ + labels.csv with a 'class' column; ROOT/{train,val,test}/ (also training_set, val_set, test_set) "
    "holding image/ + mask/ or class folders; ROOT/MainPatient/{train,val,test}.txt lists (SAMUS)"
)

_TASK_WORDS = {"cls": "classification", "seg": "segmentation"}


@dataclass
class _Found:
    """What a layout reader finds; ``classes=None`` means segmentation classes are inferred from the masks."""

    layout: str
    task: str
    samples: list[Sample]
    classes: list[str] | None


@dataclass
class _LabelsTable:
    """``labels.csv``: rows keyed by the ``name`` column, the line each name was read from, and rows that cannot be
    tied to one image (an empty or repeated name)."""

    path: Path
    columns: list[str]
    rows: dict[str, dict[str, str]]
    lines: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def load_index(
    path: str | Path, task: str | None = None, group_by: str | None = None, num_classes: int | None = None
) -> DatasetIndex:
    """Index the dataset folder ``path``, detecting its layout.

    Args:
        path: dataset root folder.
        task: ``"cls"`` or ``"seg"``; ``None`` infers it from the layout (masks present -> ``"seg"``).
        group_by: ``labels.csv`` column giving each image's group, ``filename-prefix`` or ``none``; ``None`` finds
            the group as :mod:`sonofm.data.grouping` says, and when nothing applies every image is its own group
            (``group_column=None``, with a ``grouping_hint`` when the data look grouped).
        num_classes: segmentation only: number of mask classes including background. ``None`` infers it: the SAMUS
            layout takes the largest class id of its lists (or ``MainPatient/class.json``); the other layouts scan
            the masks once and take the ids 0..k present without a gap (at least binary), so a stray value such as
            255 in a 0/1 dataset is reported by validation instead of creating 255 classes.

    Returns:
        the index, samples in a deterministic order (split, then folder/list order, then file name).
    """
    root = Path(path)
    if not root.is_dir():
        raise SonofmError(f"dataset folder not found: {root}")
    if task not in (None, "cls", "seg"):
        raise SonofmError(f"unknown task {task!r}; use 'cls' or 'seg'")
    labels = _read_labels(root / "labels.csv")
    found = _find_layout(root, task, labels)
    if task is not None and found.task != task:
        raise SonofmError(
            f"{root} is a {_TASK_WORDS[found.task]} dataset ({found.layout} layout), not {_TASK_WORDS[task]}"
        )
    if found.task == "cls" and num_classes is not None:
        raise SonofmError("num_classes applies to segmentation masks only; classification classes are the folder names")
    if not found.samples:
        raise SonofmError(f"no images found in {root}")
    column = _group_column(labels, group_by, root)
    samples = [_attach_labels(sample, root, labels, column) for sample in found.samples]
    hint = None
    if column is None and group_by != NO_GROUPING:
        samples, column, hint = _dicom_groups(samples)
    if column is None and hint is None and group_by != NO_GROUPING:
        hint = grouping_hint([source_of(s.image).name for s in samples],
                             [labels.rows.get(s.name) or labels.rows.get(source_of(s.image).stem, {}) for s in samples]
                             if labels else [], labels.columns if labels else [])
    classes = found.classes
    if found.task == "seg" and num_classes is not None:
        classes = _segmentation_classes(num_classes)
    elif classes is None:
        classes = _segmentation_classes(_infer_num_classes(samples))
    elif found.task == "cls" and len(classes) < 2:
        raise SonofmError(f"{root}: found {len(classes)} class(es) {classes}; classification needs at least two")
    return DatasetIndex(root=root, layout=found.layout, task=found.task, samples=samples, classes=classes,
                        group_column=column, row_problems=_row_problems(labels, samples), grouping_hint=hint)


def _find_layout(root: Path, task: str | None, labels: _LabelsTable | None) -> _Found:
    if (root / "MainPatient").is_dir():
        return _read_samus(root)
    split_dirs = _usfm_split_dirs(root)
    if split_dirs:
        return _read_usfm(split_dirs)
    if (root / "images").is_dir():
        return _read_flat(root, task, labels)
    class_dirs = _visible_dirs(root)
    if any(_images_in(folder) for folder in class_dirs):
        return _Found("class_folders", "cls", *_read_class_folders(class_dirs, split=None))
    raise SonofmError(f"{root} matches no dataset layout; {ACCEPTED_LAYOUTS}")


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def _images_in(folder: Path) -> list[Path]:
    """Image samples directly inside ``folder``, sorted by name, multi-frame sources expanded."""
    return expand_sources(sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p)))


def expand_sources(files: list[Path]) -> list[Path]:
    """``files`` with each cine/multi-frame DICOM replaced by its frame references; a broken one is kept as is."""
    expanded = []
    for file in files:
        try:
            expanded += expand_source(file)
        except MissingExtra:
            raise
        except SonofmError:
            expanded.append(file)  # read_image names the problem when the sample is read or validated
    return expanded


def _find_by_stem(folder: Path, stem: str, preferred_suffix: str = "") -> Path | None:
    """``folder/stem.<ext>`` for the first existing image extension (``preferred_suffix`` first)."""
    for suffix in (preferred_suffix, *IMAGE_EXTENSIONS, *(ext.upper() for ext in IMAGE_EXTENSIONS)):
        candidate = folder / f"{stem}{suffix}"
        if suffix and candidate.is_file():
            return candidate
    return None


def _read_class_folders(class_dirs: list[Path], split: str | None) -> tuple[list[Sample], list[str]]:
    """Samples of ``<class>/<image>`` folders (labels index the sorted folder names)."""
    classes = [folder.name for folder in class_dirs]
    samples = []
    for label, folder in enumerate(class_dirs):
        images = _images_in(folder)
        if not images:
            raise SonofmError(f"empty class folder: {folder} (no image files directly inside)")
        samples += [Sample(image=image, label=label, split=split) for image in images]
    return samples, classes


def _read_flat(root: Path, task: str | None, labels: _LabelsTable | None) -> _Found:
    images = _images_in(root / "images")
    mask_dir = root / "masks"
    if task == "seg" or (task is None and mask_dir.is_dir()):
        if not mask_dir.is_dir():
            raise SonofmError(f"segmentation needs a masks/ folder next to {root / 'images'}")
        samples = [Sample(image=image, mask=_find_by_stem(mask_dir, image.stem, image.suffix) or mask_dir / image.name)
                   for image in images]
        return _Found("flat", "seg", samples, None)
    if labels is None or "class" not in labels.columns:
        raise SonofmError(
            f"{root / 'images'} has no masks/ folder and no labels.csv with a 'class' column; {ACCEPTED_LAYOUTS}"
        )
    names = {image.stem: labels.rows.get(image.stem, {}).get("class", "") for image in images}
    classes = sorted({name for name in names.values() if name})
    samples = [Sample(image=image, label=classes.index(names[image.stem]) if names[image.stem] else None)
               for image in images]
    return _Found("flat", "cls", samples, classes)


def _usfm_split_dirs(root: Path) -> dict[str, Path]:
    found = {}
    for split, names in SPLIT_FOLDERS.items():
        present = [root / name for name in names if (root / name).is_dir()]
        if len(present) > 1:
            raise SonofmError(f"{root} has two {split} folders ({', '.join(p.name for p in present)}); keep one")
        if present:
            found[split] = present[0]
    return found


def _read_usfm(split_dirs: dict[str, Path]) -> _Found:
    kinds = {split: (folder / "image").is_dir() for split, folder in split_dirs.items()}
    if all(kinds.values()):
        samples = []
        for split, folder in split_dirs.items():
            samples += _usfm_segmentation_split(folder, split)
        return _Found("usfm", "seg", samples, None)
    if any(kinds.values()):
        root = next(iter(split_dirs.values())).parent
        raise SonofmError(f"split folders of {root} mix image/ + mask/ and class folders")
    class_names = sorted({d.name for folder in split_dirs.values() for d in _visible_dirs(folder)})
    samples = []
    for split, folder in split_dirs.items():
        class_dirs = _visible_dirs(folder)
        if not class_dirs:
            raise SonofmError(f"{folder} holds neither image/ + mask/ nor class folders")
        split_samples, split_classes = _read_class_folders(class_dirs, split)
        samples += [replace(s, label=class_names.index(split_classes[s.label])) for s in split_samples]
    return _Found("usfm", "cls", samples, class_names)


def _usfm_segmentation_split(folder: Path, split: str) -> list[Sample]:
    image_dir, mask_dir = folder / "image", folder / "mask"
    images = expand_sources(sorted(p for p in image_dir.rglob("*") if p.is_file() and is_image_file(p)))
    samples = []
    for image in images:
        relative = image.relative_to(image_dir)
        if parse_frame_ref(image) is not None:  # masks of frames sit next to where the source's masks would
            relative = relative.parent.parent / image.name
        mask_folder = mask_dir / relative.parent
        mask = _find_by_stem(mask_folder, image.stem, image.suffix) or mask_folder / image.name
        samples.append(Sample(image=image, mask=mask, split=split))
    return samples


def _read_samus(root: Path) -> _Found:
    list_dir = root / "MainPatient"
    if not any((list_dir / f"{split}.txt").is_file() for split in ("train", "val", "test")):
        raise SonofmError(f"{list_dir} holds none of train.txt, val.txt, test.txt")
    samples: list[Sample] = []
    max_id = 0
    datasets = set()
    for split in ("train", "val", "test"):
        list_file = list_dir / f"{split}.txt"
        if not list_file.is_file():
            continue
        seen: set[Path] = set()
        for line_number, line in enumerate(list_file.read_text().splitlines(), start=1):
            entry = _parse_samus_line(line, list_file, line_number)
            if entry is None:
                continue
            class_id, dataset, name = entry
            max_id = max(max_id, class_id or 0)
            datasets.add(dataset)
            image, mask = _samus_files(root, dataset, name, list_file, line_number)
            if image not in seen:  # a multi-structure image is listed once per class id
                seen.add(image)
                samples.append(Sample(image=image, mask=mask, split=split))
    max_id = max(max_id, _samus_class_json_max_id(list_dir / "class.json", datasets))
    return _Found("samus", "seg", samples, _segmentation_classes(max(max_id, 1) + 1))


def _parse_samus_line(line: str, list_file: Path, line_number: int) -> tuple[int | None, str, str] | None:
    """``(class id or None, dataset, image name)`` of one list line; ``None`` for a blank or comment line."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    parts = text.split("/")
    if len(parts) == 3 and parts[0].isdigit():
        return int(parts[0]), parts[1], parts[2]
    if len(parts) == 2:
        return None, parts[0], parts[1]
    raise SonofmError(
        f"{list_file} line {line_number}: expected '<class id>/<dataset>/<image name>' or '<dataset>/<image name>',"
        f" got {text!r}"
    )


def _samus_files(root: Path, dataset: str, name: str, list_file: Path, line_number: int) -> tuple[Path, Path]:
    """Image and (possibly missing) mask path of one list line."""
    dataset_dir = root / dataset
    if not dataset_dir.is_dir() and root.name == dataset:  # MainPatient kept inside the dataset folder
        dataset_dir = root
    image_dir = dataset_dir / "img"
    image = image_dir / name
    if not (is_image_file(image) and image.is_file()):
        image = _find_by_stem(image_dir, name)
    if image is None:
        raise SonofmError(f"{list_file} line {line_number}: image not found: {image_dir / name}(.png/.jpg/...)")
    label_dir = dataset_dir / "label"
    if not label_dir.is_dir() and (dataset_dir / "lable").is_dir():  # spelling used by the reference README
        label_dir = dataset_dir / "lable"
    mask = _find_by_stem(label_dir, image.stem, image.suffix) or label_dir / image.name
    return image, mask


def _samus_class_json_max_id(path: Path, datasets: set[str]) -> int:
    """Largest class id implied by ``class.json`` (dataset -> number of classes incl. background), else 0."""
    if not path.is_file():
        return 0
    try:
        counts = json.loads(path.read_text())
        return max((int(counts[name]) - 1 for name in datasets if name in counts), default=0)
    except (ValueError, TypeError, AttributeError) as error:
        raise SonofmError(f"cannot read {path}: expected {{\"<dataset>\": <number of classes>}} ({error})") from None


def _segmentation_classes(num_classes: int) -> list[str]:
    """``["background", "foreground"]`` for 2 classes, else ``["background", "class_1", ...]``."""
    if num_classes < 2:
        raise SonofmError(f"segmentation needs at least 2 classes (background + one), got {num_classes}")
    if num_classes == 2:
        return ["background", "foreground"]
    return ["background", *(f"class_{i}" for i in range(1, num_classes))]


def _infer_num_classes(samples: list[Sample]) -> int:
    """Classes 0..k present in the readable masks without a gap (at least 2); unreadable masks are skipped."""
    present: set[int] = set()
    for sample in samples:
        if sample.mask is not None and sample.mask.is_file():
            try:
                present.update(unique_ids(read_mask(sample.mask)))
            except SonofmError:
                continue  # validation reports it
    k = 0
    while k + 1 in present:
        k += 1
    return max(k, 1) + 1


def _read_labels(path: Path) -> _LabelsTable | None:
    """The rows of ``labels.csv`` by name (a repeated name: the last row wins, and it is recorded as a problem)."""
    if not path.is_file():
        return None
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "name" not in columns:
            raise SonofmError(f"{path} has no 'name' column (the image file stem); columns: {', '.join(columns)}")
        reader.fieldnames = columns
        table = _LabelsTable(path, columns, rows={})
        for raw in reader:
            _add_label_row(table, {k: (v or "").strip() for k, v in raw.items() if k is not None}, reader.line_num)
    return table


def _add_label_row(table: _LabelsTable, row: dict[str, str], line: int) -> None:
    """Key ``row`` (read from ``line``) by its name; rows without a name or repeating one are recorded as problems."""
    name = row["name"]
    if not any(row.values()):
        return  # a row of empty cells, as spreadsheets leave at the end
    if not name:
        table.problems.append(f"{table.path} line {line}: row without a 'name' (the image file stem)")
        return
    if name in table.rows:
        table.problems.append(f"{table.path} line {line}: name '{name}' repeats line {table.lines[name]}")
    table.rows[name] = row
    table.lines[name] = line


def _row_problems(labels: _LabelsTable | None, samples: list[Sample]) -> list[str]:
    """``labels.csv`` rows that tie to no image (by image stem, frame name or cine/DICOM source stem), plus the rows
    without a name or with a repeated one; each names the file, the line and the row's name."""
    if labels is None:
        return []
    sources = {source_of(sample.image) for sample in samples}
    known = {sample.name for sample in samples} | {source.stem for source in sources}
    multi_frame = {source.stem: source for source in sources if is_source_file(source)}
    unmatched = [name for name in labels.rows if name not in known and not _names_frame_of(name, multi_frame)]
    return labels.problems + [
        f"{labels.path} line {labels.lines[name]}: row '{name}' matches no image (no file with that stem)"
        for name in unmatched
    ]


def _names_frame_of(name: str, sources: dict[str, Path]) -> bool:
    """True when ``name`` names an existing frame (``clip_f0007``) of one of the cine/DICOM ``sources`` (by stem),
    sampled or not; a source whose frames cannot be counted is reported as a file of its own."""
    parsed = parse_frame_name(name)
    if parsed is None or parsed[0] not in sources:
        return False
    try:
        return parsed[1] < frame_count(sources[parsed[0]])
    except SonofmError:
        return True


def _group_column(labels: _LabelsTable | None, group_by: str | None, root: Path) -> str | None:
    """The ``labels.csv`` column (or ``filename-prefix``) that groups the images; None for none."""
    if group_by == NO_GROUPING:
        return None
    if group_by == FILENAME_PREFIX and (labels is None or FILENAME_PREFIX not in labels.columns):
        return FILENAME_PREFIX
    if group_by is not None:
        if labels is None:
            raise SonofmError(f"group column {group_by!r} requested but {root / 'labels.csv'} does not exist")
        if group_by not in labels.columns:
            raise SonofmError(
                f"group column {group_by!r} not in {labels.path}; available columns: {', '.join(labels.columns)}"
            )
        return group_by
    if labels is None:
        return None
    return known_group_column(labels.columns)


def _attach_labels(sample: Sample, root: Path, labels: _LabelsTable | None, column: str | None) -> Sample:
    """Give ``sample`` its ``labels.csv`` row and group (its own key when there is no group column)."""
    source = source_of(sample.image)
    rows = labels.rows if labels else {}
    row = rows.get(sample.name) or rows.get(source.stem, {})
    own_group = source.relative_to(root).as_posix()
    if column == FILENAME_PREFIX and FILENAME_PREFIX not in row:
        group = filename_prefix(source.name)
    else:
        group = (row.get(column) or None) if column else own_group
    if group is None and source != sample.image:  # frames of one source never split apart
        group = own_group
    return replace(sample, meta={**_source_meta(sample.image), **row}, group=group)


def _dicom_groups(samples: list[Sample]) -> tuple[list[Sample], str | None, str | None]:
    """Samples of DICOM files grouped by their patient (or study) id digest, the grouping's name and a hint.

    Unchanged, without a name, when no file has an id, or with a hint when several files all carry the same id
    (one patient's data, or ids blanked to one value by anonymisation): then nothing can keep patients apart."""
    ids = {source: dicom_case_id(source) for source in {source_of(s.image) for s in samples} if is_dicom_file(source)}
    found = {case for case in ids.values() if case}
    if not found:
        return samples, None, None
    if len(found) == 1 and len(ids) > 1:
        return samples, None, (f"all {len(ids)} DICOM files carry the same PatientID/StudyInstanceUID, so images "
                               "are grouped by file only: if they are one patient's, every split mixes that patient "
                               "(--group-by COL with a labels.csv column fixes the groups; --group-by none silences "
                               "this)")
    return [replace(s, group=ids.get(source_of(s.image)) or s.group) for s in samples], DICOM_GROUPING, None


def _source_meta(image: Path) -> dict[str, str]:
    """DICOM technical metadata of the sample's source plus its ``frame`` index; empty for a plain image."""
    parsed = parse_frame_ref(image)
    source = source_of(image)
    meta = {"frame": str(parsed[1])} if parsed else {}
    if is_dicom_file(source):
        try:
            meta.update(dicom_metadata(source))
        except SonofmError:
            pass  # validation reports the unreadable file
    return meta
