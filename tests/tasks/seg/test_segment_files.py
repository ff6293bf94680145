"""Predictions map back to each image's own size; metrics at full resolution; pixel sizes from labels.csv."""

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from sonofm.data.records import Sample
from sonofm.errors import SonofmError
from sonofm.tasks.seg.evaluation import evaluate_segmentation, pixel_size_column, pixel_size_of
from sonofm.tasks.seg.segment_files import segment_images


class LeftHalfIsForeground(nn.Module):
    """Scores (B, 2, S, S): class 1 on the left half of the input, whatever the pixels."""

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = images.shape
        foreground = torch.zeros(batch, 1, height, width)
        foreground[..., : width // 2] = 1.0
        return torch.cat([1 - foreground, foreground], dim=1)


def write_image(path, width, height):
    Image.fromarray(np.full((height, width), 100, dtype=np.uint8)).save(path)
    return path


def test_predictions_come_back_at_each_images_size(tmp_path):
    paths = [write_image(tmp_path / "a.png", 90, 50), write_image(tmp_path / "b.png", 40, 64)]
    predictions = dict(segment_images(LeftHalfIsForeground(), paths, img_size=32, batch_size=2, progress=False))
    assert predictions[0].shape == (50, 90) and predictions[1].shape == (64, 40)
    assert predictions[0].dtype == torch.int64
    assert (predictions[0][:, :45] == 1).all() and (predictions[0][:, 45:] == 0).all()
    assert (predictions[1][:, :20] == 1).all() and (predictions[1][:, 20:] == 0).all()


def test_full_resolution_metrics_with_pixel_sizes(tmp_path):
    image = write_image(tmp_path / "a.png", 80, 40)
    truth = np.zeros((40, 80), dtype=np.uint8)
    truth[:, :40] = 1  # exactly the model's left half
    Image.fromarray(truth).save(tmp_path / "a_mask.png")
    empty = write_image(tmp_path / "b.png", 80, 40)
    Image.fromarray(np.zeros((40, 80), dtype=np.uint8)).save(tmp_path / "b_mask.png")
    samples = [
        Sample(image=image, mask=tmp_path / "a_mask.png", meta={"pixel_size_mm": "0.5"}),
        Sample(image=empty, mask=tmp_path / "b_mask.png", meta={"pixel_size_mm": "0.5"}),
    ]
    metrics, rows = evaluate_segmentation(LeftHalfIsForeground(), samples, 32, ["background", "lesion"],
                                          pixel_column="pixel_size_mm", progress=False)
    # image a is perfect; image b has no lesion but a predicted half: Dice 0, HD95 undefined
    assert metrics["dice"] == pytest.approx(0.5)
    assert metrics["hd95"] == pytest.approx(0.0) and metrics["hd95_undefined"] == pytest.approx(0.5)
    assert metrics["hd95_mm"] == pytest.approx(0.0)
    assert metrics["pixel_accuracy"] == pytest.approx(0.75)
    assert [row["name"] for row in rows] == ["a", "b"] and float(rows[0]["dice"]) == 1.0


def test_mask_with_a_class_the_model_lacks_is_named(tmp_path):
    image = write_image(tmp_path / "a.png", 20, 20)
    Image.fromarray(np.full((20, 20), 3, dtype=np.uint8)).save(tmp_path / "a_mask.png")
    with pytest.raises(SonofmError, match="a_mask.png has class id 3"):
        evaluate_segmentation(LeftHalfIsForeground(), [Sample(image=image, mask=tmp_path / "a_mask.png")], 32,
                              ["background", "lesion"], progress=False)


def test_pixel_size_column_is_found_and_checked(tmp_path):
    samples = [Sample(image=tmp_path / "a.png", meta={"pixel_size_mm_orig": "0.1", "pixel_size_mm_resized": "0.3"})]
    assert pixel_size_column(samples, None) == "pixel_size_mm_resized"
    assert pixel_size_column([Sample(image=tmp_path / "a.png")], None) is None
    with pytest.raises(SonofmError, match="'spacing' is not a labels.csv column"):
        pixel_size_column(samples, "spacing")
    assert pixel_size_of(samples[0], "pixel_size_mm_resized") == pytest.approx(0.3)
    assert pixel_size_of(Sample(image=tmp_path / "b.png", meta={"p": ""}), "p") is None
    for bad in ("abc", "-1", "inf"):
        with pytest.raises(SonofmError, match="b.png"):
            pixel_size_of(Sample(image=tmp_path / "b.png", meta={"p": bad}), "p")
    assert not math.isnan(pixel_size_of(samples[0], "pixel_size_mm_orig"))
