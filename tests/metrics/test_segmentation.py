import math

import pytest
import torch

from sonofm.metrics.segmentation import SegmentationMetrics, segmentation_metrics

BINARY = ["background", "lesion"]
THREE = ["background", "a", "b"]


def square(size, top, left, side, height=None, value=1):
    """(size, height or size) int64 mask with a ``side`` x ``side`` square of ``value`` at (top, left)."""
    mask = torch.zeros(size, height or size, dtype=torch.long)
    mask[top : top + side, left : left + side] = value
    return mask


def multiclass_pair():
    target = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 0, 0], [2, 2, 0, 0]])
    pred = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1], [2, 0, 0, 0], [2, 2, 2, 0]])
    return pred, target


def test_perfect_prediction():
    mask = square(32, 8, 8, 10)
    metrics = segmentation_metrics([mask], [mask], BINARY)
    assert metrics["dice"] == pytest.approx(1.0)
    assert metrics["iou"] == pytest.approx(1.0)
    assert metrics["hd95"] == pytest.approx(0.0)
    assert metrics["pixel_accuracy"] == pytest.approx(1.0)
    assert metrics["hd95_undefined"] == 0.0
    assert "hd95_mm" not in metrics


def test_empty_prediction_and_target_count_as_perfect():
    empty = torch.zeros(16, 16, dtype=torch.long)
    metrics = segmentation_metrics([empty], [empty], BINARY)
    assert metrics["dice/lesion"] == pytest.approx(1.0)
    assert metrics["iou/lesion"] == pytest.approx(1.0)
    assert metrics["hd95/lesion"] == pytest.approx(0.0)
    assert metrics["hd95_undefined"] == 0.0


@pytest.mark.parametrize("empty_side", ["target", "pred"])
def test_exactly_one_empty_gives_zero_dice_and_undefined_hd95(empty_side):
    empty, lesion = torch.zeros(16, 16, dtype=torch.long), square(16, 4, 4, 5)
    pred, target = (lesion, empty) if empty_side == "target" else (empty, lesion)
    metrics = SegmentationMetrics(BINARY)
    metrics.update(pred, target)
    image = metrics.per_image()[0]
    assert image["dice"] == 0.0 and image["iou"] == 0.0
    assert math.isnan(image["hd95"])
    metrics.update(lesion, lesion)  # perfect second image: its HD95 0 is the only defined value
    summary = metrics.compute()
    assert summary["dice"] == pytest.approx(0.5)
    assert summary["dice_std"] == pytest.approx(0.5)  # population std of [0, 1]
    assert summary["hd95"] == pytest.approx(0.0)
    assert summary["hd95_undefined"] == pytest.approx(0.5)


def test_all_undefined_hd95_is_nan():
    metrics = segmentation_metrics([square(16, 4, 4, 5)], [torch.zeros(16, 16, dtype=torch.long)], BINARY)
    assert math.isnan(metrics["hd95"]) and math.isnan(metrics["hd95/lesion"])
    assert metrics["hd95_undefined"] == 1.0


def test_multiclass_hand_computed():
    # class a: |P| = 5, |G| = 4, |P∩G| = 4; class b: |P| = 4, |G| = 4, |P∩G| = 3; 3 of 16 pixels wrong
    pred, target = multiclass_pair()
    metrics = SegmentationMetrics(THREE, compute_hd95=False)
    metrics.update(pred, target)
    summary = metrics.compute()
    assert summary["dice/a"] == pytest.approx(8 / 9)
    assert summary["iou/a"] == pytest.approx(4 / 5)
    assert summary["dice/b"] == pytest.approx(6 / 8)
    assert summary["iou/b"] == pytest.approx(3 / 5)
    assert summary["dice"] == pytest.approx((8 / 9 + 6 / 8) / 2)
    assert summary["iou"] == pytest.approx((4 / 5 + 3 / 5) / 2)
    assert summary["pixel_accuracy"] == pytest.approx(13 / 16)
    assert not any(key.startswith("hd95") for key in summary)
    assert "dice/background" not in summary


def test_class_absent_everywhere_gets_dice_one():
    mask = square(16, 2, 2, 6)  # class "b" never appears
    metrics = segmentation_metrics([mask], [mask], THREE)
    assert metrics["dice/b"] == pytest.approx(1.0)
    assert metrics["iou/b"] == pytest.approx(1.0)
    assert metrics["hd95/b"] == pytest.approx(0.0)


def test_ignore_index_pixels_are_excluded():
    pred, target = multiclass_pair()
    target[1, 1] = 255  # hides the extra "a" pixel of pred
    metrics = segmentation_metrics([pred], [target], THREE)
    assert metrics["dice/a"] == pytest.approx(1.0)
    assert metrics["hd95/a"] == pytest.approx(0.0)
    assert metrics["dice/b"] == pytest.approx(6 / 8)
    assert metrics["pixel_accuracy"] == pytest.approx(13 / 15)


def test_ignored_pixels_are_background_for_hd95():
    target = square(32, 4, 4, 6)
    pred = target.clone()
    pred[25:28, 25:28] = 1  # a far-away false positive, hidden by ignore_index
    target[24:30, 24:30] = 255
    metrics = segmentation_metrics([pred], [target], BINARY)
    assert metrics["dice"] == pytest.approx(1.0)
    assert metrics["hd95"] == pytest.approx(0.0)


def test_hd95_of_squares_shifted_by_three_pixels():
    # Every boundary pixel of one square is at most 3 px from the other boundary; the left (resp. right) columns,
    # over a quarter of each boundary, are exactly 3 px away, so the 95th percentile is 3.
    metrics = segmentation_metrics([square(40, 10, 10, 10)], [square(40, 10, 13, 10)], BINARY)
    assert metrics["hd95"] == pytest.approx(3.0)


def test_hd95_of_square_grown_by_two_pixels():
    # Inner boundary -> outer boundary: every pixel is 2 px away. Outer -> inner: the 4 corners are sqrt(8) away and
    # their 8 neighbours along the boundary sqrt(5); the other outer pixels are 2 away. MONAI takes the percentile of
    # each direction (torch.quantile, linear interpolation) and the max of the two.
    # Small square: outer side 14, 52 boundary pixels; the 95th percentile sits at sorted index 0.95 * 51 = 48.45,
    # among the top 4 corner values, hence sqrt(8).
    small = segmentation_metrics([square(40, 10, 10, 10)], [square(40, 8, 8, 14)], BINARY)
    assert small["hd95"] == pytest.approx(math.sqrt(8))
    # Large square: outer side 64, 252 boundary pixels; index 0.95 * 251 = 238.45 lies below the 12 values above 2
    # (sorted indices 240..251), hence exactly 2, while the plain Hausdorff distance would be sqrt(8).
    large = segmentation_metrics([square(80, 10, 10, 60)], [square(80, 8, 8, 64)], BINARY)
    assert large["hd95"] == pytest.approx(2.0)


def test_hd95_mm_scales_by_each_images_pixel_size():
    preds = [square(40, 10, 10, 10), square(80, 10, 10, 60), square(16, 4, 4, 5)]
    targets = [square(40, 10, 13, 10), square(80, 8, 8, 64), torch.zeros(16, 16, dtype=torch.long)]
    metrics = segmentation_metrics(preds, targets, BINARY, pixel_sizes_mm=[0.5, 0.2, None])
    assert metrics["hd95"] == pytest.approx((3.0 + 2.0) / 2)
    assert metrics["hd95_mm"] == pytest.approx((3.0 * 0.5 + 2.0 * 0.2) / 2)  # third image: undefined, no size needed
    assert metrics["hd95_undefined"] == pytest.approx(1 / 3)
    missing = segmentation_metrics(preds, targets, BINARY, pixel_sizes_mm=[0.5, None, None])
    assert "hd95_mm" not in missing


def test_mixed_image_sizes_and_per_image_values():
    pred, target = multiclass_pair()
    metrics = SegmentationMetrics(THREE)
    metrics.update(torch.stack([target, pred]), torch.stack([target, target]), pixel_size_mm=0.1)
    metrics.update(square(24, 2, 2, 8, height=40, value=2), square(24, 2, 2, 8, height=40, value=2))
    images = metrics.per_image()
    assert len(metrics) == len(images) == 3
    assert images[0]["dice"] == pytest.approx(1.0)
    assert images[1]["dice/a"] == pytest.approx(8 / 9)
    assert images[1]["iou/b"] == pytest.approx(3 / 5)
    assert images[1]["pixel_accuracy"] == pytest.approx(13 / 16)
    assert images[1]["hd95_mm"] == pytest.approx(images[1]["hd95"] * 0.1)
    assert images[2]["dice/a"] == pytest.approx(1.0)  # absent from both
    assert "hd95_mm" not in images[2]
    summary = metrics.compute()
    assert summary["dice/a"] == pytest.approx((1 + 8 / 9 + 1) / 3)
    assert summary["pixel_accuracy"] == pytest.approx((16 + 13 + 24 * 40) / (16 + 16 + 24 * 40))


def test_invalid_inputs_raise():
    metrics = SegmentationMetrics(BINARY)
    with pytest.raises(ValueError):
        metrics.update(torch.zeros(4, 4, dtype=torch.long), torch.zeros(4, 5, dtype=torch.long))
    with pytest.raises(ValueError):
        metrics.update(torch.zeros(4, 4), torch.zeros(4, 4))
    with pytest.raises(ValueError):
        metrics.update(torch.full((4, 4), 2), torch.zeros(4, 4, dtype=torch.long))
    with pytest.raises(ValueError):
        metrics.compute()
    assert len(metrics) == 0
