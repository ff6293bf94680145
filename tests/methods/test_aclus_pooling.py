"""Anatomy pooling keeps distinct anatomies distinct (the reference collapsed them into one region)."""

import numpy as np
import pytest
import torch
from PIL import Image

from sonofm.data.anatomy_maps import AnatomyPairs
from sonofm.methods.aclus.dataset import AclusDataset
from sonofm.methods.aclus.pooling import id_fractions, id_presence, pool_features, pool_through_conv, sample_ids


def quadrant_mask(size: int = 32) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.int64)
    half = size // 2
    mask[:half, half:], mask[half:, :half], mask[half:, half:] = 1, 2, 3
    return mask


def test_pooled_embeddings_are_the_mean_feature_of_each_anatomy():
    mask = quadrant_mask()[None]
    features = torch.zeros(1, 2, 4, 4)  # a 4x4 feature map: one value per quadrant (2x2 cells each)
    values = {0: (1.0, 0.0), 1: (0.0, 1.0), 2: (-1.0, 0.0), 3: (0.0, -1.0)}
    for anatomy, (first, second) in values.items():
        rows = slice(0, 2) if anatomy < 2 else slice(2, 4)
        cols = slice(0, 2) if anatomy % 2 == 0 else slice(2, 4)
        features[0, 0, rows, cols], features[0, 1, rows, cols] = first, second
    ids = torch.tensor([[3, 1, 0, 2]])
    pooled = pool_features(features, id_fractions(mask, ids, grid=8))
    expected = torch.tensor([[values[3], values[1], values[0], values[2]]])
    torch.testing.assert_close(pooled, expected)


def test_partial_cells_are_weighted_by_area():
    mask = torch.zeros(1, 8, 8, dtype=torch.int64)
    mask[0, :, 6:] = 1  # id 1 covers half of the right column of 4x4-pixel cells
    features = torch.tensor([[[[0.0, 10.0], [0.0, 10.0]]]])  # (1, 1, 2, 2)
    pooled = pool_features(features, id_fractions(mask, torch.tensor([[1, 0]]), grid=2))
    assert pooled[0, 0, 0].item() == 10.0
    assert abs(pooled[0, 1, 0].item() - 10.0 / 3) < 1e-5  # id 0: left cells fully, right cells half


def test_ids_are_drawn_only_among_anatomies_present_in_both_views():
    a = quadrant_mask()[None]
    b = a.clone()
    b[b == 3] = 1  # anatomy 3 is not visible in view b
    shared = torch.minimum(id_presence(a, 4, background=False), id_presence(b, 4, background=False))
    ids, valid = sample_ids(shared, 64, torch.Generator().manual_seed(0))
    assert valid.tolist() == [True] and set(ids[0].tolist()) == {1, 2}
    none, valid = sample_ids(torch.zeros(1, 4), 4, torch.Generator().manual_seed(0))
    assert valid.tolist() == [False] and none.tolist() == [[0, 0, 0, 0]]


def test_integer_id_pngs_keep_every_anatomy(tmp_path):
    """P-1 regression: a 0/1/2/3 id PNG must give four regions, not one (no division by 255)."""
    mask = quadrant_mask(64).numpy().astype(np.uint8)
    Image.fromarray(mask).save(tmp_path / "mask.png")
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(tmp_path / "image.png")
    pairs = AnatomyPairs([tmp_path / "image.png"], [tmp_path / "mask.png"])
    sample = AclusDataset(pairs, img_size=32, crop_scale=(1.0, 1.0))[0]
    for ids in (sample["view_masks"][0], sample["view_masks"][1], sample["core_mask"]):
        assert set(ids.unique().tolist()) == {0, 1, 2, 3}
    counts = id_presence(sample["view_masks"], 4, background=True)
    assert (counts > 0).sum(dim=1).tolist() == [4, 4]


def test_pooling_through_a_conv_equals_pooling_its_output():
    """The FPN smoothing shortcut is exact: values and gradients, an absent id (all-zero fractions) included."""
    generator = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(5, 7, 3, padding=1).double()
    features = torch.randn(2, 5, 6, 8, generator=generator, dtype=torch.float64, requires_grad=True)
    fractions = torch.rand(2, 3, 12, 16, generator=generator, dtype=torch.float64)
    fractions[1, 2] = 0.0
    shortcut = pool_through_conv(conv, features, fractions)
    dense = pool_features(conv(features), fractions)
    torch.testing.assert_close(shortcut, dense)
    assert shortcut[1, 2].abs().max().item() == 0.0
    upstream = torch.randn(dense.shape, generator=generator, dtype=torch.float64)
    grads = torch.autograd.grad((shortcut * upstream).sum(), [features, conv.weight, conv.bias])
    dense_grads = torch.autograd.grad((pool_features(conv(features), fractions) * upstream).sum(),
                                      [features, conv.weight, conv.bias])
    for grad, dense_grad in zip(grads, dense_grads):
        torch.testing.assert_close(grad, dense_grad)


def test_pooling_through_a_strided_conv_is_refused():
    with pytest.raises(ValueError, match="size-keeping"):
        pool_through_conv(torch.nn.Conv2d(2, 2, 3, stride=2, padding=1), torch.zeros(1, 2, 4, 4),
                          torch.ones(1, 1, 4, 4))
