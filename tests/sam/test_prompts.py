"""Prompts from masks: one per (image, class present); clicks inside, boxes tight or jittered within bounds."""

import pytest
import torch

from sonofm.errors import SonofmError
from sonofm.sam.prompts import jitter_boxes, prompts_from_masks, tight_boxes


@pytest.fixture
def masks():
    masks = torch.zeros(3, 32, 32, dtype=torch.int64)
    masks[0, 4:10, 6:20] = 1  # image 0: class 1 and class 2
    masks[0, 20:30, 2:5] = 2
    masks[2, 15:17, 15:17] = 2  # image 1: background only; image 2: class 2 only
    masks[2, 0, 0] = 255  # ignored pixels are never a class
    return masks


def test_one_prompt_per_image_and_class_present(masks):
    prompts = prompts_from_masks(masks, 3, "point")
    assert prompts.image_index.tolist() == [0, 0, 2]
    assert prompts.class_id.tolist() == [1, 2, 2]
    targets = prompts.targets(masks)
    assert targets.shape == (3, 32, 32) and targets.sum(dim=(1, 2)).tolist() == [84, 30, 4]


def test_random_clicks_fall_inside_their_class(masks):
    generator = torch.Generator().manual_seed(0)
    prompts = prompts_from_masks(masks, 3, "point", generator, num_clicks=5)
    assert prompts.points.shape == (3, 5, 2) and prompts.boxes is None
    for prompt in range(3):
        for x, y in prompts.points[prompt].long().tolist():
            assert masks[prompts.image_index[prompt], y, x] == prompts.class_id[prompt]


def test_fixed_click_is_the_most_interior_pixel():
    masks = torch.zeros(1, 20, 20, dtype=torch.int64)
    masks[0, 2:9, 3:10] = 1  # 7 x 7 square: its centre (6, 5) is farthest from the border
    prompts = prompts_from_masks(masks, 2, "point")
    assert prompts.points.tolist() == [[[6.0, 5.0]]]
    assert torch.equal(prompts_from_masks(masks, 2, "point").points, prompts.points)  # deterministic


def test_tight_boxes_are_inclusive_pixel_bounds(masks):
    prompts = prompts_from_masks(masks, 3, "box")
    assert prompts.boxes.tolist() == [[6, 4, 19, 9], [2, 20, 4, 29], [15, 15, 16, 16]]


def test_jitter_moves_edges_by_at_most_the_fraction_and_stays_in_the_image():
    boxes = torch.tensor([[10.0, 10.0, 19.0, 29.0], [0.0, 0.0, 31.0, 31.0]])
    generator = torch.Generator().manual_seed(1)
    for _ in range(50):
        moved = jitter_boxes(boxes, 32, 32, 0.1, generator)
        assert torch.all(moved >= 0) and torch.all(moved <= 31)
        assert torch.all(moved[:, :2] <= moved[:, 2:])
        assert torch.all((moved[0] - boxes[0]).abs() <= torch.tensor([1.0, 2.0, 1.0, 2.0]) + 1e-6)


def test_tight_boxes_of_single_pixel():
    region = torch.zeros(1, 8, 8, dtype=torch.bool)
    region[0, 3, 5] = True
    assert tight_boxes(region).tolist() == [[5, 3, 5, 3]]


def test_unknown_prompt_kind_is_an_error(masks):
    with pytest.raises(SonofmError, match="prompt kinds"):
        prompts_from_masks(masks, 3, "scribble")
