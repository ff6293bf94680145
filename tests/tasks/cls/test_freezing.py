"""What each fine-tuning mode trains, and frozen parts running in eval mode."""

import pytest

from sonofm.models import create_backbone
from sonofm.models.classifier import ImageClassifier
from sonofm.tasks.cls.module import ClassificationModule
from sonofm.tasks.cls.freezing import eval_frozen_modules, freeze_backbone
from sonofm.engine.optim import OptimConfig, build_optimizer


def trained_roots(backbone, mode: str) -> set[str]:
    """``root`` (or ``blocks.i``) of every parameter left trainable by ``mode``."""
    freeze_backbone(backbone, mode)
    roots = set()
    for name, param in backbone.named_parameters():
        if param.requires_grad:
            parts = name.split(".")
            roots.add(".".join(parts[:2]) if parts[0] == "blocks" else parts[0])
    return roots


@pytest.mark.parametrize("name", ["resnet18", "usfm_vit_tiny_patch16", "timm_vit_tiny_patch16"])
def test_modes_train_what_they_say(name):
    extra = {} if name == "resnet18" else {"depth": 3}
    make = lambda: create_backbone(name, img_size=32, **extra)  # noqa: E731
    everything = trained_roots(make(), "full")
    assert trained_roots(make(), "linear") == set()
    partial = trained_roots(make(), "partial")
    if name == "resnet18":
        assert partial == {"layer4"}
    else:  # the last block and the final norm; earlier blocks, embeddings and tokens stay frozen
        assert {"blocks.2", "norm"} <= partial and not partial & {"blocks.0", "blocks.1", "patch_embed", "cls_token"}
        assert partial == {root for root in everything if root in ("blocks.2", "norm", "fc_norm", "head", "norm_pre")}


def test_partial_module_optimises_layer4_and_head_and_keeps_frozen_batchnorm_in_eval():
    model = ImageClassifier(create_backbone("resnet18", img_size=64), num_classes=3)
    module = ClassificationModule(model, ["a", "b", "c"], OptimConfig(), mode="partial")
    optimised = {id(p) for group in build_optimizer(model, OptimConfig()).param_groups for p in group["params"]}
    names = {name for name, p in model.named_parameters() if id(p) in optimised}
    assert names == {name for name in dict(model.named_parameters())
                     if name.startswith(("backbone.layer4.", "fc_norm.", "head."))}
    module.train()
    eval_frozen_modules(module.model.backbone)
    assert not model.backbone.bn1.training and not model.backbone.layer3[1].bn2.training
    assert model.backbone.layer4[0].bn1.training and model.head.training
