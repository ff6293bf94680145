"""Grad-CAM: the map lies where the evidence for the class is, agrees with a direct computation on every backbone
family, and leaves the model untouched."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from sonofm.errors import SonofmError
from sonofm.models import create_backbone
from sonofm.models.classifier import ImageClassifier
from sonofm.report.gradcam import grad_cam


class CellReader(nn.Module):
    """Logits ``(<u, A(cell)>, -<u, A(cell)>)``: they depend on the last feature map ``A`` at one grid cell only."""

    def __init__(self, backbone: nn.Module, cell: int, direction: torch.Tensor):
        super().__init__()
        self.backbone = backbone
        self.cell = cell
        self.direction = direction

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone.forward_tokens(images)[:, self.backbone.num_prefix_tokens + self.cell]
        score = features @ self.direction
        return torch.stack((score, -score), dim=1)


def quadrant_of_peak(cam: torch.Tensor) -> tuple[int, int]:
    row, col = divmod(int(cam.flatten().argmax()), cam.shape[1])
    return row * 2 // cam.shape[0], col * 2 // cam.shape[1]


@pytest.mark.parametrize("quadrant", [(0, 0), (0, 1), (1, 1)])
def test_cam_peaks_where_the_evidence_is(quadrant):
    """A ResNet classifier on a blank image with one textured square: the class logit grows with the features, and
    only the square produces features, so the CAM must peak in the square's quadrant."""
    torch.manual_seed(0)
    model = ImageClassifier(create_backbone("resnet18", img_size=128), num_classes=2, head_init_scale=1.0)
    model.fc_norm = nn.Identity()
    with torch.no_grad():
        model.head.weight.fill_(1.0)
        model.head.bias.zero_()
    model.eval()
    images = torch.zeros(1, 3, 128, 128)
    top, left = quadrant[0] * 64 + 16, quadrant[1] * 64 + 16
    images[:, :, top : top + 32, left : left + 32] = 2 * torch.rand(1, 3, 32, 32)
    cams, logits = grad_cam(model, images, torch.tensor([0]))
    assert cams.shape == (1, 128, 128) and logits.shape == (1, 2)
    assert quadrant_of_peak(cams[0]) == quadrant
    assert float(cams.min()) == 0.0 and float(cams.max()) == pytest.approx(1.0)
    inside = cams[0, quadrant[0] * 64 : quadrant[0] * 64 + 64, quadrant[1] * 64 : quadrant[1] * 64 + 64].mean()
    assert inside > 1.4 * cams[0].mean()


@pytest.mark.parametrize("name", ["resnet18", "usfm_vit_tiny_patch16", "timm_vit_tiny_patch16"])
def test_cam_matches_direct_computation(name):
    """For logits that read one cell of the feature map along ``u``, the class-0 gradient is ``u`` at that cell and 0
    elsewhere, so the CAM is relu(<u, A(p)>) at every cell p, upsampled and scaled to [0, 1]; computed here from
    ``forward_tokens`` (no hooks), it checks the hooked layer, the token-to-grid layout and the prefix tokens."""
    torch.manual_seed(1)
    extra = {} if name == "resnet18" else {"depth": 2}
    backbone = create_backbone(name, img_size=64, **extra).eval()
    images = torch.randn(2, 3, 64, 64)
    side = 2 if name == "resnet18" else 4
    cell = side - 1  # row 0, last column: a transposed or flipped layout would move it
    with torch.no_grad():
        tokens = backbone.forward_tokens(images)[:, backbone.num_prefix_tokens :]
    direction = tokens[0, cell] - tokens[0].mean(dim=0)
    cams, logits = grad_cam(CellReader(backbone, cell, direction), images, torch.tensor([0, 0]))
    scores = F.relu(tokens @ direction).reshape(2, 1, side, side)
    expected = F.interpolate(scores, size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    low, high = expected.amin(dim=(1, 2), keepdim=True), expected.amax(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(cams, (expected - low) / (high - low), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits[:, 0], tokens[:, cell] @ direction, atol=1e-4, rtol=1e-4)


def test_frozen_classifier_predicted_class_and_no_side_effects():
    torch.manual_seed(2)
    model = ImageClassifier(create_backbone("usfm_vit_tiny_patch16", img_size=32, depth=1), num_classes=3).eval()
    model.requires_grad_(False)  # a linear-probing model: no parameter needs a gradient
    images = torch.randn(3, 3, 32, 32)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    cams, logits = grad_cam(model, images)
    assert cams.shape == (3, 32, 32) and bool(((cams >= 0) & (cams <= 1)).all())
    with torch.no_grad():
        torch.testing.assert_close(logits, model(images))
    assert all(param.grad is None for param in model.parameters())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])
    assert not model.backbone.blocks[-1]._forward_hooks  # the hook is removed


def test_unsupported_backbone_is_a_clean_error():
    model = nn.Module()
    model.backbone = nn.Linear(2, 2)
    with pytest.raises(SonofmError, match="Grad-CAM supports ResNet, ViT and timm backbones, not Linear"):
        grad_cam(model, torch.zeros(1, 3, 32, 32))
