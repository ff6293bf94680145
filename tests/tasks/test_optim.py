import pytest
from torch import nn

from sonofm.tasks.optim import OptimConfig, build_optimizer, warmup_cosine


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
