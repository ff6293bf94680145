"""The A-SAM loss against a hand computation."""

import math

import pytest
import torch

from sonofm.sam.losses import bce_dice_loss


def test_bce_dice_matches_hand_computation():
    logits = torch.tensor([[[0.0, 2.0], [-1.0, 1.0]]])
    targets = torch.tensor([[[0.0, 1.0], [0.0, 1.0]]])
    p = [0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1)), 1 / (1 + math.exp(-1))]
    t = [0, 1, 0, 1]
    pos_weight = 2.0
    bce = -sum(pos_weight * ti * math.log(pi) + (1 - ti) * math.log(1 - pi) for pi, ti in zip(p, t)) / 4
    dice = (2 * (p[1] + p[3]) + 1) / (sum(p) + 2 + 1)
    losses = bce_dice_loss(logits, targets, bce_weight=0.2, dice_weight=0.8, pos_weight=pos_weight)
    assert losses["bce"].item() == pytest.approx(bce, rel=1e-5)
    assert losses["dice_loss"].item() == pytest.approx(1 - dice, rel=1e-5)
    assert losses["loss"].item() == pytest.approx(0.2 * bce + 0.8 * (1 - dice), rel=1e-5)


def test_invalid_pixels_count_for_nothing():
    logits = torch.tensor([[[5.0, -5.0, 9.0]]])
    targets = torch.tensor([[[1.0, 0.0, 0.0]]])
    valid = torch.tensor([[[True, True, False]]])
    masked = bce_dice_loss(logits, targets, valid=valid)
    cropped = bce_dice_loss(logits[..., :2], targets[..., :2])
    assert masked["bce"].item() == pytest.approx(cropped["bce"].item(), rel=1e-6)
    assert masked["dice_loss"].item() == pytest.approx(cropped["dice_loss"].item(), rel=1e-6)


def test_empty_target_and_empty_prediction_costs_almost_nothing():
    losses = bce_dice_loss(torch.full((1, 8, 8), -20.0), torch.zeros(1, 8, 8))
    assert losses["loss"].item() < 1e-6
