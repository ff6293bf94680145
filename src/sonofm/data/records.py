"""The dataset index every layout reader returns: one :class:`Sample` per image."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One image with its label or mask and metadata.

    Attributes:
        image: path of the image file, or a frame reference ``clip.mp4/clip_f0007`` (see ``sonofm.data.frames``).
        label: class index into :attr:`DatasetIndex.classes` (classification), else ``None``.
        mask: path of the integer mask (segmentation), else ``None``.
        group: grouping key (patient, video, acquisition); frames sharing it never straddle splits.
        split: ``"train" | "val" | "test"`` when the layout defines splits, else ``None``.
        meta: the image's row of ``labels.csv`` (strings), if any, over DICOM technical fields (``pixel_size_mm``...)
            and the ``frame`` index of a frame reference.
    """

    image: Path
    label: int | None = None
    mask: Path | None = None
    group: str | None = None
    split: str | None = None
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def name(self) -> str:
        """File stem (``clip_f0007`` for a frame), the key that ties an image to its ``labels.csv`` row."""
        return self.image.stem


@dataclass
class DatasetIndex:
    """Everything a task needs to know about a dataset folder.

    Attributes:
        root: the folder given by the user.
        layout: ``"usfm" | "flat" | "class_folders" | "samus"``.
        task: ``"cls"`` (labels) or ``"seg"`` (masks).
        samples: all samples, in a deterministic order.
        classes: class names; for segmentation, index i names mask value i (``"background"`` first).
        group_column: what :attr:`Sample.group` comes from, if anything: a ``labels.csv`` column,
            ``filename-prefix`` or the DICOM ids (:mod:`sonofm.data.grouping`).
        grouping_hint: one line when images are ungrouped although the data look grouped (a repeating column,
            shared file-name prefixes), naming the flag that groups them.
        row_problems: ``labels.csv`` rows that match no image, lack a name or repeat one, each naming its line.
    """

    root: Path
    layout: str
    task: str
    samples: list[Sample]
    classes: list[str]
    group_column: str | None = None
    row_problems: list[str] = field(default_factory=list)
    grouping_hint: str | None = None

    @property
    def has_splits(self) -> bool:
        """True when the layout itself assigns every sample to train/val/test."""
        return bool(self.samples) and all(s.split is not None for s in self.samples)

    @property
    def num_classes(self) -> int:
        return len(self.classes)
