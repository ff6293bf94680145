"""Resampling of BEiT relative position bias tables between patch grids."""

import numpy as np
import pytest
import torch

from sonofm.models.relative_position import (
    geometric_offsets,
    resample_bias_table,
    square_grid_for_rows,
    table_rows,
)


def test_table_rows_and_grid_inference():
    assert table_rows((14, 14)) == 732 and table_rows((32, 32)) == 3972 and table_rows((4, 6)) == 7 * 11 + 3
    assert square_grid_for_rows(732) == (14, 14) and square_grid_for_rows(3972) == (32, 32)
    assert square_grid_for_rows(731) is None and square_grid_for_rows(4 + 3) is None  # 2x2 offsets: even span


def test_geometric_offsets():
    assert np.array_equal(geometric_offsets(14, 14), np.arange(-13, 14))
    stretched = geometric_offsets(14, 32)
    assert stretched.shape == (27,)
    assert stretched[13] == 0 and stretched[14] == 1 and stretched[-1] == pytest.approx(31, abs=1e-9)
    steps = np.diff(stretched[13:])
    assert np.allclose(steps[1:] / steps[:-1], steps[1] / steps[0])  # one common ratio
    ratio = steps[1] / steps[0]
    assert (ratio**13 - 1) / (ratio - 1) == pytest.approx(31) and ratio == pytest.approx(1.13492, abs=1e-5)
    shrunk = geometric_offsets(32, 14)
    assert shrunk[-1] == pytest.approx(13, abs=1e-9) and np.all(np.diff(shrunk) > 0)


def test_same_grid_is_the_identity():
    table = torch.randn(732, 12)
    assert resample_bias_table(table, (14, 14), (14, 14)) is table


def test_upsampling_keeps_cls_rows_and_the_centre():
    table = torch.randn(732, 12, generator=torch.Generator().manual_seed(0))
    resampled = resample_bias_table(table, (14, 14), (32, 32))
    assert resampled.shape == (3972, 12) and resampled.dtype == table.dtype
    assert torch.equal(resampled[-3:], table[-3:])
    source = table[:-3].reshape(27, 27, 12)
    target = resampled[:-3].reshape(63, 63, 12)
    # offsets 0 and +-1 sit on source knots, where the spline reproduces the data
    for dy, dx in [(0, 0), (1, 0), (0, -1), (-1, 1)]:
        assert torch.allclose(target[31 + dy, 31 + dx], source[13 + dy, 13 + dx], atol=1e-5)
    assert torch.allclose(target[62, 62], source[26, 26], atol=1e-4)  # the far corner maps onto the far corner


def test_interpolation_is_cubic_in_the_geometric_coordinates():
    positions = torch.from_numpy(geometric_offsets(5, 9))
    y, x = torch.meshgrid(positions, positions, indexing="ij")

    def cubic(a, b):
        return 0.5 + 0.3 * a - 0.02 * a * b + 0.004 * a**3 - 0.001 * b**2 * a

    table = torch.cat((torch.stack((cubic(y, x), -cubic(x, y)), dim=-1).reshape(81, 2), torch.ones(3, 2)))
    resampled = resample_bias_table(table.double(), (5, 5), (9, 9))
    ty, tx = torch.meshgrid(torch.arange(-8.0, 9.0), torch.arange(-8.0, 9.0), indexing="ij")
    expected = torch.stack((cubic(ty, tx), -cubic(tx, ty)), dim=-1).reshape(289, 2).double()
    assert torch.allclose(resampled[:-3], expected, atol=1e-9)


def test_downsampling_shape():
    assert resample_bias_table(torch.randn(3972, 3), (32, 32), (14, 14)).shape == (732, 3)


def test_tiny_grids_are_refused():
    with pytest.raises(ValueError, match="at least 3x3"):
        resample_bias_table(torch.randn(12, 2), (2, 2), (4, 4))
