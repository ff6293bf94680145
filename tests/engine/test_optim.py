import pytest
import torch
from torch import nn

from sonofm.errors import SonofmError
from sonofm.engine.config import FinetuneConfig
from sonofm.engine.optim import OptimConfig, build_optimizer, warmup_cosine


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
