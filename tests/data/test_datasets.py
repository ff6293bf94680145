"""Torch datasets over samples and files: item shapes, labels, batching, and clear errors."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from sonofm.data.datasets import ClassificationDataset, ImageFileDataset, SegmentationDataset
from sonofm.data.records import Sample
from sonofm.errors import SonofmError


def png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def test_classification_dataset_batches(tmp_path):
    samples = [Sample(png(tmp_path / f"{i}.png", np.full((20, 30), 50 * i, np.uint8)), label=i) for i in range(3)]
    dataset = ClassificationDataset(samples, img_size=16, train=True)
    image, label = dataset[2]
    assert image.shape == (3, 16, 16) and label == 2
    images, labels = next(iter(DataLoader(dataset, batch_size=3)))
    assert images.shape == (3, 3, 16, 16) and labels.tolist() == [0, 1, 2]


def test_segmentation_dataset_item_and_size_mismatch(tmp_path):
    ids = np.zeros((20, 30), np.uint8)
    ids[5:10, 5:15] = 255
    good = Sample(png(tmp_path / "a.png", np.full((20, 30), 80, np.uint8)), mask=png(tmp_path / "a_mask.png", ids))
    image, mask = SegmentationDataset([good], img_size=16, train=False)[0]
    assert image.shape == (3, 16, 16) and mask.shape == (16, 16) and mask.dtype == torch.int64
    assert set(mask.unique().tolist()) == {0, 1}
    bad = Sample(good.image, mask=png(tmp_path / "small.png", ids[:10]))
    with pytest.raises(SonofmError, match=r"mask size 30x10 != image size 30x20: .*small\.png"):
        SegmentationDataset([bad], img_size=16, train=False)[0]


def test_datasets_refuse_samples_without_targets(tmp_path):
    path = png(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(SonofmError, match="without a class label"):
        ClassificationDataset([Sample(path)], 8, train=False)
    with pytest.raises(SonofmError, match="without a mask"):
        SegmentationDataset([Sample(path)], 8, train=False)


def test_image_file_dataset_returns_positions(tmp_path):
    paths = [png(tmp_path / f"{i}.png", np.full((10, 12), i, np.uint8)) for i in range(2)]
    dataset = ImageFileDataset(paths, img_size=8)
    assert len(dataset) == 2
    image, position = dataset[1]
    assert image.shape == (3, 8, 8) and position == 1
