"""Core corruption: a damaged copy in [0, 1]; each transform does what it says, vectorised over the batch."""

import torch

from sonofm.methods.aclus.corruption import CorruptionConfig, bezier_remap, corrupt, inpaint, shuffle_cells


def test_corrupt_returns_a_changed_copy_in_range():
    images = torch.rand(4, 3, 64, 64)
    before = images.clone()
    out = corrupt(images, CorruptionConfig(), torch.Generator().manual_seed(0))
    assert torch.equal(images, before)  # the clean core is untouched
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    assert (out != images).float().mean() > 0.3


def test_shuffling_permutes_pixels_within_cells_only():
    images = torch.rand(2, 1, 22, 22)
    config = CorruptionConfig(shuffle_p=1.0, shuffle_block=11, shuffle_cell_p=1.0)
    out = shuffle_cells(images, config, torch.Generator().manual_seed(0))
    for row in (0, 11):
        for col in (0, 11):
            cell, moved = images[..., row:row + 11, col:col + 11], out[..., row:row + 11, col:col + 11]
            assert torch.equal(cell.flatten(2).sort().values, moved.flatten(2).sort().values)
            assert not torch.equal(cell, moved)
    off = shuffle_cells(images, CorruptionConfig(shuffle_p=0.0), torch.Generator().manual_seed(0))
    assert torch.equal(off, images)


def test_bezier_remap_is_a_function_of_intensity_fixing_the_ends():
    images = torch.rand(3, 1, 16, 16)
    images[:, :, 0, 0], images[:, :, 0, 1] = 0.0, 1.0
    out = bezier_remap(images, 1.0, torch.Generator().manual_seed(0))
    assert torch.allclose(out[:, :, 0, 0], torch.zeros(3, 1), atol=1e-3)
    assert torch.allclose(out[:, :, 0, 1], torch.ones(3, 1), atol=1e-3)
    flat_in, flat_out = images[0].flatten(), out[0].flatten()
    same = (flat_in[:, None] - flat_in[None]).abs() < 1e-7
    assert torch.all((flat_out[:, None] - flat_out[None]).abs()[same] < 1e-6)  # equal in, equal out


def test_inpainting_fills_rectangles_with_noise():
    images = torch.zeros(2, 3, 50, 50)
    config = CorruptionConfig(inpaint_boxes=3, inpaint_box_p=1.0, inpaint_size=(0.2, 0.2))
    out = inpaint(images, config, torch.Generator().manual_seed(0))
    changed = (out != 0).any(dim=1)
    assert changed.any() and not changed.all()
    assert out.max() <= 1
    for image in changed:  # the changed pixels form at most 3 rectangles of 10 x 10
        assert 100 <= int(image.sum()) <= 300
