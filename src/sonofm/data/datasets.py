"""Torch datasets over :class:`Sample` lists (training, evaluation) and plain image files (prediction)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from sonofm.data.image_io import read_image, read_mask
from sonofm.data.packed import PackedImages, read_image_at
from sonofm.data.records import Sample
from sonofm.data.sampling import ItemKey, item_generator
from sonofm.data.transforms import ClassificationTransform, SegmentationTransform
from sonofm.errors import SonofmError


class ClassificationDataset(Dataset):
    """``(image float32 (3, S, S) ImageNet-normalised, label int)`` per sample; augmented when ``train``."""

    def __init__(self, samples: Sequence[Sample], img_size: int, train: bool, augment: str = "sonofm") -> None:
        unlabeled = next((s for s in samples if s.label is None), None)
        if unlabeled is not None:
            raise SonofmError(f"image without a class label: {unlabeled.image}")
        self.samples = list(samples)
        self.transform = ClassificationTransform(img_size, train, augment)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: ItemKey) -> tuple[torch.Tensor, int]:
        position, generator = item_generator(key)
        sample = self.samples[position]
        return self.transform(read_image(sample.image), generator), int(sample.label)


class SegmentationDataset(Dataset):
    """``(image float32 (3, S, S), mask int64 (S, S))`` per sample; paired augmentation when ``train``."""

    def __init__(self, samples: Sequence[Sample], img_size: int, train: bool) -> None:
        unmasked = next((s for s in samples if s.mask is None), None)
        if unmasked is not None:
            raise SonofmError(f"image without a mask: {unmasked.image}")
        self.samples = list(samples)
        self.transform = SegmentationTransform(img_size, train)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: ItemKey) -> tuple[torch.Tensor, torch.Tensor]:
        position, generator = item_generator(key)
        sample = self.samples[position]
        image, mask = read_image(sample.image), read_mask(sample.mask)
        if image.shape[:2] != mask.shape:
            raise SonofmError(f"mask size {mask.shape[1]}x{mask.shape[0]} != image size "
                              f"{image.shape[1]}x{image.shape[0]}: {sample.mask}")
        return self.transform(image, mask, generator)


class ImageFileDataset(Dataset):
    """``(image float32 (3, S, S), index int)`` per image, resized for prediction (no augmentation).

    ``images``: image files, or a packed folder's :class:`PackedImages`; ``positions`` (optional) picks a subset,
    in order (``index`` counts within it).
    """

    def __init__(self, images: Sequence[str | Path] | PackedImages, img_size: int,
                 positions: Sequence[int] | None = None) -> None:
        self.images = images if isinstance(images, PackedImages) else [Path(path) for path in images]
        self.positions = positions
        self.transform = ClassificationTransform(img_size, train=False)

    def __len__(self) -> int:
        return len(self.positions) if self.positions is not None else len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        position = self.positions[index] if self.positions is not None else index
        return self.transform(read_image_at(self.images, position)), index
