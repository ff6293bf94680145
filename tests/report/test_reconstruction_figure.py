"""The MIM reconstruction figure: the reconstruction pasted into the hidden blocks over the input, drawn in
grayscale for grayscale images."""

import matplotlib.pyplot as plt
import torch

from sonofm.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from sonofm.report import figures
from sonofm.report.figures import pasted_reconstruction, plot_reconstructions


def test_visible_blocks_equal_the_input_and_hidden_ones_the_reconstruction():
    originals, reconstructions = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, :4, :4] = 1
    pasted = pasted_reconstruction(originals, reconstructions, mask)
    assert torch.equal(pasted[:, :, 4:, :], originals[:, :, 4:, :]) and torch.equal(pasted[:, :, :, 4:],
                                                                                    originals[:, :, :, 4:])
    assert torch.equal(pasted[:, :, :4, :4], reconstructions[:, :, :4, :4])


def test_grayscale_rows_are_drawn_in_grayscale_with_four_panels(tmp_path, monkeypatch):
    drawn = []
    real_subplots = plt.subplots

    def recording_subplots(*args, **kwargs):
        figure, axes = real_subplots(*args, **kwargs)
        for axis in axes.flat:
            original = axis.imshow
            axis.imshow = lambda image, *a, _original=original, **k: drawn.append((image.ndim, k.get("cmap"))) or \
                _original(image, *a, **k)
        return figure, axes

    monkeypatch.setattr(figures.plt, "subplots", recording_subplots)
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    gray = (torch.randint(0, 256, (1, 1, 8, 8)) / 255 - mean) / std  # equal pixel values in every channel
    color = torch.rand(1, 3, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    plot_reconstructions(torch.cat([gray, color]), torch.cat([gray, color]), mask.repeat(2, 1, 1, 1),
                         torch.rand(2, 3, 8, 8), tmp_path / "figure.png", "test")
    assert (tmp_path / "figure.png").is_file()
    assert drawn == [(2, "gray")] * 4 + [(3, None)] * 4
