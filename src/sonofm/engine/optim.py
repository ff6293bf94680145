"""Optimiser and schedule shared by fine-tuning tasks: AdamW (or Adam) with layer-wise LR decay, warmup + cosine
per step."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from sonofm.errors import SonofmError

# ``optim.optimizer`` -> optimiser. AdamW decouples weight decay from the gradient; Adam adds it to the gradient
# (L2 regularisation), as older recipes such as USCL's fine-tuning do.
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}

NO_DECAY_NAME_PARTS = ("cls_token", "mask_token", "pos_embed", "relative_position_bias_table")


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


def layer_decay_param_groups(model: nn.Module, weight_decay: float, layer_decay: float) -> list[dict]:
    """Optimiser groups: LR scale ``layer_decay ** (top - layer_id)``; no weight decay on 1-D params, tokens, tables.

    ``model`` must expose ``layer_id(name) -> int`` and ``num_layer_ids``; frozen parameters are left out.
    """
    top = model.num_layer_ids - 1
    groups: dict[tuple[int, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name.endswith(".bias") or any(part in name for part in NO_DECAY_NAME_PARTS)
        layer = model.layer_id(name)
        group = groups.setdefault(
            (layer, no_decay),
            {"params": [], "weight_decay": 0.0 if no_decay else weight_decay, "lr_scale": layer_decay ** (top - layer)},
        )
        group["params"].append(param)
    return list(groups.values())


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
