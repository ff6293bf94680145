import csv

import pytest
import torch
from torch import nn

from sonofm.engine.config import FinetuneConfig
from sonofm.engine.optim import OptimConfig, build_optimizer, parameter_recipes, warmup_cosine, write_param_groups
from sonofm.errors import SonofmError
from sonofm.models import create_backbone
from sonofm.models.classifier import ImageClassifier


class TwoLayer(nn.Module):
    """Stand-in with the layer_id interface: embed (0), block (1), head (2)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 4)
        self.block = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)
        self.cls_token = nn.Parameter(nn.init.zeros_(nn.Linear(4, 1).weight))

    num_layer_ids = 3

    def layer_id(self, name):
        return {"embed": 0, "cls_token": 0, "block": 1}.get(name.split(".")[0], 2)


def test_layer_decay_scales_and_no_decay_groups():
    model = TwoLayer()
    optimizer = build_optimizer(model, OptimConfig(lr=1.0, layer_decay=0.5, weight_decay=0.05))
    by_param = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    assert by_param[id(model.head.weight)]["lr"] == pytest.approx(1.0)
    assert by_param[id(model.block.weight)]["lr"] == pytest.approx(0.5)
    assert by_param[id(model.embed.weight)]["lr"] == pytest.approx(0.25)
    assert by_param[id(model.embed.weight)]["weight_decay"] == 0.05
    assert by_param[id(model.embed.bias)]["weight_decay"] == 0.0
    assert by_param[id(model.cls_token)]["weight_decay"] == 0.0


def test_frozen_parameters_are_left_out():
    model = TwoLayer()
    model.embed.requires_grad_(False)
    optimizer = build_optimizer(model, OptimConfig())
    params = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert id(model.embed.weight) not in params and id(model.head.weight) in params


def test_warmup_cosine_shape():
    factor = warmup_cosine(total_steps=100, warmup_steps=10, min_lr_ratio=0.01)
    assert factor(0) == pytest.approx(1 / 11)
    assert factor(9) == pytest.approx(10 / 11)
    assert factor(10) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.01 + 0.99 * 0.5)
    assert factor(100) == pytest.approx(0.01)
    assert all(factor(s) >= factor(s + 1) for s in range(10, 100))


def one_step(optimizer_name: str) -> float:
    """A parameter at 2.0 with zero gradient after one step of lr 0.1 and weight decay 0.01."""
    model = TwoLayer()
    config = OptimConfig(optimizer=optimizer_name, lr=0.1, weight_decay=0.01, layer_decay=1.0)
    optimizer = build_optimizer(model, config)
    with torch.no_grad():
        model.head.weight.fill_(2.0)
    model.head.weight.grad = torch.zeros_like(model.head.weight)
    optimizer.step()
    return float(model.head.weight.detach()[0, 0])


def test_adam_couples_weight_decay_adamw_decouples_it():
    assert type(build_optimizer(TwoLayer(), OptimConfig())) is torch.optim.AdamW
    assert type(build_optimizer(TwoLayer(), OptimConfig(optimizer="adam"))) is torch.optim.Adam
    # AdamW shrinks the weight by lr * wd; Adam adds wd * w to the gradient, and its normalised step moves by ~lr
    assert one_step("adamw") == pytest.approx(2.0 * (1 - 0.1 * 0.01))
    assert one_step("adam") == pytest.approx(2.0 - 0.1, abs=1e-4)


def test_unknown_optimizer_is_refused():
    with pytest.raises(SonofmError, match="optim.optimizer must be one of adamw, adam, got 'sgd'"):
        build_optimizer(TwoLayer(), OptimConfig(optimizer="sgd"))
    with pytest.raises(SonofmError, match="optim.optimizer must be one of adamw, adam, got 'sgd'"):
        FinetuneConfig(data="x", optim=OptimConfig(optimizer="sgd")).validate()


def usfm_layer_id(name: str) -> int:
    """USFM's (BEiT's) rule for a ViT-B classifier: tokens and patch embedding 0, ``blocks.i`` i + 1, the rest 13."""
    name = name.removeprefix("backbone.")
    if name.startswith(("cls_token", "mask_token", "pos_embed", "patch_embed.")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return 13


def test_the_usfm_vit_b_classifier_follows_usfm_layer_decay_for_every_parameter(tmp_path):
    model = ImageClassifier(create_backbone("usfm_vit_base_patch16", img_size=224), num_classes=3)
    recipes = parameter_recipes(model, weight_decay=0.05, layer_decay=0.65)
    assert len(recipes) == sum(p.requires_grad for p in model.parameters())
    for recipe in recipes:
        assert recipe.layer_id == usfm_layer_id(recipe.name), recipe.name
        assert recipe.lr_scale == pytest.approx(0.65 ** (13 - recipe.layer_id)), recipe.name
        one_d_or_token = recipe.name.endswith(("bias", "cls_token", "mask_token", "pos_embed")) or \
            dict(model.named_parameters())[recipe.name].ndim == 1
        assert recipe.weight_decay == (0.0 if one_d_or_token else 0.05), recipe.name
    scale = {recipe.name: recipe.lr_scale for recipe in recipes}
    assert scale["backbone.blocks.11.mlp.fc2.weight"] == pytest.approx(0.65)
    assert scale["backbone.patch_embed.proj.weight"] == pytest.approx(0.0037, abs=5e-5)
    assert scale["head.weight"] == scale["fc_norm.weight"] == 1.0
    decay = {recipe.name: recipe.weight_decay for recipe in recipes}
    assert decay["backbone.blocks.0.attn.relative_position_bias_table"] == 0.05  # 2-D tables decay, as in USFM

    path = write_param_groups(model, OptimConfig(layer_decay=0.65, weight_decay=0.05), tmp_path / "param_groups.csv")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["name"] for row in rows] == [recipe.name for recipe in recipes]
    assert rows[-1] == {"name": "head.bias", "layer_id": "13", "lr_scale": "1", "weight_decay": "0.0"}


def test_modules_above_a_resnet_sit_one_id_above_layer4():
    model = ImageClassifier(create_backbone("resnet18", img_size=64), num_classes=2)
    assert model.layer_id("backbone.layer4.0.conv1.weight") == 4
    assert model.layer_id("head.weight") == 5 == model.num_layer_ids - 1
