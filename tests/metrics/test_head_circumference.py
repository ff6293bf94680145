"""Head circumference from masks: the moment-matched ellipse's perimeter, and the per-image / summary errors."""

import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from sonofm.data.image_io import read_mask
from sonofm.metrics.head_circumference import HeadCircumferenceErrors, ellipse_circumference


def ellipse_mask(size=(200, 160), center=(100, 80), axes=(60, 30), angle=0.0) -> torch.Tensor:
    """A filled ellipse with semi-axes ``axes`` rotated by ``angle`` degrees, as a bool (H, W) tensor."""
    t = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    x, y = axes[0] * np.cos(t), axes[1] * np.sin(t)
    r = np.deg2rad(angle)
    points = list(zip(center[0] + x * np.cos(r) - y * np.sin(r), center[1] + x * np.sin(r) + y * np.cos(r)))
    image = Image.new("1", size)
    ImageDraw.Draw(image).polygon(points, fill=1)
    return torch.from_numpy(np.array(image))


def ramanujan(a, b):
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


@pytest.mark.parametrize("axes, angle", [((60, 30), 0.0), ((50, 50), 0.0), ((70, 20), 35.0)])
def test_circumference_of_drawn_ellipses_matches_the_formula(axes, angle):
    # rasterised masks hold their boundary pixels: about half a pixel more on each semi-axis
    assert ellipse_circumference(ellipse_mask(axes=axes, angle=angle)) == pytest.approx(ramanujan(*axes), rel=0.02)


def test_circle_and_empty_mask():
    assert ellipse_circumference(ellipse_mask(axes=(40, 40))) == pytest.approx(2 * math.pi * 40, rel=0.02)
    assert math.isnan(ellipse_circumference(torch.zeros(20, 20, dtype=torch.bool)))


def test_errors_per_image_and_in_mm():
    errors = HeadCircumferenceErrors()
    truth = ellipse_mask(axes=(60, 30)).long()
    errors.update(ellipse_mask(axes=(66, 33)).long(), truth, pixel_size_mm=0.5)  # 10 % larger
    errors.update(torch.zeros_like(truth), truth, pixel_size_mm=0.5)  # nothing predicted: no circumference
    first, second = errors.per_image()
    assert first["hc_abs_error"] == pytest.approx(0.1 * ramanujan(60, 30), rel=0.05)
    assert first["hc_abs_error_mm"] == pytest.approx(0.5 * first["hc_abs_error"])
    assert math.isnan(second["hc"]) and not math.isnan(second["hc_true"])
    summary = errors.compute()
    assert summary["hc_abs_error"] == pytest.approx(first["hc_abs_error"])  # the undefined image is left out
    assert summary["hc_abs_error_mm"] == pytest.approx(first["hc_abs_error_mm"])
    no_sizes = HeadCircumferenceErrors()
    no_sizes.update(truth, truth)
    assert no_sizes.compute() == {"hc_abs_error": 0.0}


@pytest.mark.real_data
def test_hc18_masks_give_the_annotated_head_circumference(shared_data):
    """HC18's labels.csv holds each head's annotated circumference (mm) and the masks' pixel size."""
    root = shared_data / "seg" / "HC18"
    with (root / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:40]
    for row in rows:
        mask = torch.from_numpy(read_mask(root / "masks" / f"{row['name']}.png")) == 1
        measured = ellipse_circumference(mask) * float(row["pixel_size_mm_resized"])
        assert measured == pytest.approx(float(row["head_circumference_mm"]), rel=0.03), row["name"]
