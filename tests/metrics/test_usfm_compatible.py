"""USFM's binary Dice and row-wise Manhattan "Hausdorff" on hand-computed cases, and as SegmentationMetrics columns."""

import pytest
import torch

from sonofm.metrics.segmentation import SegmentationMetrics
from sonofm.metrics.usfm_compatible import usfm_dice, usfm_row_hausdorff


def mask(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[int(value) for value in row] for row in rows])


TARGET = mask(["1100", "1100", "0000", "0000"])
PRED = mask(["1100", "1000", "0000", "0000"])


def test_binary_dice_with_usfm_smoothing():
    assert usfm_dice(PRED, TARGET) == pytest.approx((2 * 3 + 1e-5) / (3 + 4 + 1e-5), rel=1e-12)
    assert usfm_dice(torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 4, dtype=torch.long)) == 1.0
    assert usfm_dice(PRED * 2, TARGET) == usfm_dice(PRED, TARGET)  # classes collapse to foreground
    assert usfm_dice(torch.zeros(4, 4, dtype=torch.long), TARGET) == pytest.approx(1e-5 / (4 + 1e-5))


def test_rows_are_the_points_of_the_hausdorff_distance():
    # pred row 1 (1000) is 1 away (L1) from its nearest target row; every target row has an equal pred row
    assert usfm_row_hausdorff(PRED, TARGET) == 1.0
    assert usfm_row_hausdorff(TARGET, PRED) == 1.0  # symmetric
    far = mask(["0000", "0000", "0000", "1111"])
    # rows of far: 0000 (0 to a target zero row) and 1111 (2 to 1100); rows of TARGET: 1100 (2 to 0000 or 1111)
    assert usfm_row_hausdorff(far, TARGET) == 2.0
    shifted = mask(["0000", "0000", "1100", "1100"])  # the same mask two rows down: the same set of rows
    assert usfm_row_hausdorff(shifted, TARGET) == 0.0


def test_segmentation_metrics_report_both_with_their_spread():
    metrics = SegmentationMetrics(["background", "lesion"])
    metrics.update(PRED, TARGET)
    metrics.update(TARGET, TARGET)
    result = metrics.compute()
    first = (6 + 1e-5) / (7 + 1e-5)
    assert result["usfm_dice"] == pytest.approx((first + 1.0) / 2)
    assert result["usfm_dice_std"] == pytest.approx((1.0 - first) / 2)
    assert result["usfm_hausdorff"] == pytest.approx(0.5) and result["usfm_hausdorff_std"] == pytest.approx(0.5)
    assert [image["usfm_hausdorff"] for image in metrics.per_image()] == [1.0, 0.0]
    validation = SegmentationMetrics(["background", "lesion"], compute_hd95=False)
    validation.update(PRED, TARGET)
    assert "usfm_hausdorff" not in validation.compute() and "usfm_dice" in validation.compute()
