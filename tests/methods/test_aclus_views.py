"""Paired views: anatomy maps follow the crops and flips, and the overlap is right in every view."""

import torch

from sonofm.methods.aclus.views import ViewParams, box_in_view, overlap, render_view, sample_view


def coordinate_image(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An image whose channels hold each pixel's original x and y (as fractions), and an id map of 4x4 tiles."""
    ys, xs = torch.meshgrid(torch.arange(height).float(), torch.arange(width).float(), indexing="ij")
    image = torch.stack([(xs + 0.5) / width, (ys + 0.5) / height, torch.zeros_like(xs)])
    ids = (ys // (height / 4)).long() * 4 + (xs // (width / 4)).long()
    return image, ids


def test_overlap_is_the_intersection_in_original_pixels():
    a = ViewParams((10, 20, 50, 60), flip=False)  # top, left, height, width
    b = ViewParams((30, 5, 60, 40), flip=True)
    assert overlap(a, b) == (30, 20, 30, 25)  # rows 30..60, columns 20..45
    assert overlap(a, ViewParams((70, 0, 10, 10), flip=False)) is None


def test_overlap_lands_on_the_same_pixels_in_both_views_under_crops_and_flips():
    height, width, size = 120, 160, 64
    image, ids = coordinate_image(height, width)
    generator = torch.Generator().manual_seed(0)
    checked = 0
    for _ in range(40):
        a, b = sample_view(height, width, generator, (0.2, 1.0)), sample_view(height, width, generator, (0.2, 1.0))
        core = overlap(a, b)
        if core is None:
            continue
        view_a, _ = render_view(image, ids, a, size)
        view_b, _ = render_view(image, ids, b, size)
        for view, params in ((view_a, a), (view_b, b)):
            x0, y0, x1, y1 = box_in_view(core, params, size)
            assert -1e-6 <= x0 < x1 <= size + 1e-6 and -1e-6 <= y0 < y1 <= size + 1e-6
            column, row = int((x0 + x1) / 2), int((y0 + y1) / 2)  # the overlap's centre in this view ...
            original_x = float(view[0, row, column]) * width
            original_y = float(view[1, row, column]) * height
            # ... shows the overlap's centre in the original image (within a view pixel's footprint)
            assert abs(original_x - (core[1] + core[3] / 2)) <= params.box[3] / size + 1.0
            assert abs(original_y - (core[0] + core[2] / 2)) <= params.box[2] / size + 1.0
        checked += 1
    assert checked > 10


def test_masks_follow_the_image_through_crop_and_flip():
    image, ids = coordinate_image(64, 64)
    view = ViewParams((0, 0, 64, 32), flip=True)  # the left half, mirrored
    crop, mask = render_view(image, ids, view, 32)
    assert mask.shape == (32, 32) and mask.dtype == torch.int64
    assert set(mask.unique().tolist()) == {0, 1, 4, 5, 8, 9, 12, 13}  # only the tiles of the left half
    assert mask[0, -1] == 0 and mask[0, 0] == 1  # mirrored: tile 0 now on the right
    assert crop[0, 0, -1] < crop[0, 0, 0]  # and the image with it
