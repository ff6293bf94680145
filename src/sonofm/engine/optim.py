"""Optimiser and schedule shared by fine-tuning tasks: AdamW (or Adam) with layer-wise LR decay, warmup + cosine
per step."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sonofm.atomic import atomic_write_text
from sonofm.errors import SonofmError

# ``optim.optimizer`` -> optimiser. AdamW decouples weight decay from the gradient; Adam adds it to the gradient
# (L2 regularisation), as older recipes such as USCL's fine-tuning do.
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}

NO_DECAY_NAME_PARTS = ("cls_token", "mask_token", "pos_embed")  # as USFM and BEiT: 2-D relative position tables decay


@dataclass
class OptimConfig:
    """Optimiser settings (``--set optim.<key>=...``). ``lr`` is the peak LR of the top layer (the head).

    ``layer_decay`` ``None`` means 0.65 when fine-tuning from pretrained weights and 1.0 (none) from scratch, where
    damping the lower layers only slows learning. ``optimizer`` is a key of :data:`OPTIMIZERS`.
    """

    optimizer: str = "adamw"
    lr: float = 5e-4
    weight_decay: float = 0.05
    layer_decay: float | None = None
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 5.0


def optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    """The optimiser called ``name`` in :data:`OPTIMIZERS`; SonofmError naming ``optim.optimizer`` otherwise."""
    if name not in OPTIMIZERS:
        raise SonofmError(f"optim.optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name]


@dataclass(frozen=True)
class ParameterRecipe:
    """How one trainable parameter tensor is optimised: its layer id, LR scale and weight decay."""

    name: str
    layer_id: int
    lr_scale: float
    weight_decay: float


def parameter_recipes(model: nn.Module, weight_decay: float, layer_decay: float) -> list[ParameterRecipe]:
    """Per trainable parameter: LR scale ``layer_decay ** (top - layer_id)`` (BEiT's and USFM's rule); no weight
    decay on 1-D parameters, biases, the class and mask tokens and absolute position embeddings.

    ``model`` must expose ``layer_id(name) -> int`` and ``num_layer_ids``; frozen parameters are left out.
    """
    top = model.num_layer_ids - 1
    recipes = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name.endswith(".bias") or any(part in name for part in NO_DECAY_NAME_PARTS)
        layer = model.layer_id(name)
        recipes.append(ParameterRecipe(name, layer, layer_decay ** (top - layer), 0.0 if no_decay else weight_decay))
    return recipes


def layer_decay_param_groups(model: nn.Module, weight_decay: float, layer_decay: float) -> list[dict]:
    """Optimiser groups of :func:`parameter_recipes`: one per (layer id, weight decay), with its ``lr_scale``."""
    parameters = dict(model.named_parameters())
    groups: dict[tuple[int, float], dict] = {}
    for recipe in parameter_recipes(model, weight_decay, layer_decay):
        group = groups.setdefault((recipe.layer_id, recipe.weight_decay),
                                  {"params": [], "weight_decay": recipe.weight_decay, "lr_scale": recipe.lr_scale})
        group["params"].append(parameters[recipe.name])
    return list(groups.values())


def write_param_groups(model: nn.Module, config: OptimConfig, path: Path) -> Path:
    """``param_groups.csv``: ``name,layer_id,lr_scale,weight_decay``, one row per trainable parameter tensor."""
    layer_decay = 1.0 if config.layer_decay is None else config.layer_decay
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "layer_id", "lr_scale", "weight_decay"])
    writer.writerows((recipe.name, recipe.layer_id, f"{recipe.lr_scale:.6g}", recipe.weight_decay)
                     for recipe in parameter_recipes(model, config.weight_decay, layer_decay))
    return atomic_write_text(path, buffer.getvalue())


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    """``config.optimizer`` over :func:`layer_decay_param_groups` of ``model``, each group at ``lr * lr_scale``."""
    optimizer = optimizer_class(config.optimizer)
    layer_decay = 1.0 if config.layer_decay is None else config.layer_decay
    groups = layer_decay_param_groups(model, config.weight_decay, layer_decay)
    for group in groups:
        group["lr"] = config.lr * group["lr_scale"]
    return optimizer(groups, lr=config.lr, betas=config.betas)


def warmup_cosine(total_steps: int, warmup_steps: int, min_lr_ratio: float):
    """LR multiplier per optimiser step: linear warmup from ~0 to 1, then cosine down to ``min_lr_ratio``."""
    total_steps = max(1, total_steps)
    warmup_steps = min(max(0, warmup_steps), total_steps - 1)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
