"""Which backbone parameters a fine-tuning mode trains, and keeping the frozen parts in eval mode."""

from __future__ import annotations

from torch import nn

# full: everything trains; partial: the backbone's last stage (and everything above the backbone); last_block: only
# the backbone's last block (a ResNet's last residual block of layer4, a ViT's last block: what USCL trains);
# linear: nothing of the backbone.
MODES = ("full", "partial", "last_block", "linear")


def last_stage_layer_id(backbone: nn.Module) -> int:
    """The lowest layer id of the backbone's last stage: ``last_stage_layer_id`` where the backbone sets it (a ViT's
    last block, below its final norm), else its top id ``num_layer_ids - 1`` (a ResNet's layer4)."""
    return getattr(backbone, "last_stage_layer_id", backbone.num_layer_ids - 1)


def last_block_prefix(backbone: nn.Module) -> str:
    """Parameter-name prefix of the backbone's last block: its ``last_block_prefix`` where it sets one (a timm
    passthrough), else ``layer4.<last>.`` (ResNet) or ``blocks.<last>.`` (ViT)."""
    if getattr(backbone, "last_block_prefix", None):
        return backbone.last_block_prefix
    for stage in ("layer4", "blocks"):
        blocks = getattr(backbone, stage, None)
        if isinstance(blocks, nn.Sequential | nn.ModuleList) and len(blocks):
            return f"{stage}.{len(blocks) - 1}."
    raise ValueError(f"{type(backbone).__name__} has no layer4 or blocks: --mode last_block needs a ResNet or a ViT")


def freeze_backbone(backbone: nn.Module, mode: str) -> None:
    """Stop gradients to the backbone parameters that ``mode`` does not train (see :data:`MODES`)."""
    if mode not in MODES:
        raise ValueError(f"unknown fine-tuning mode {mode!r}; use one of {', '.join(MODES)}")
    if mode == "full":
        return
    if mode == "last_block":
        prefix = last_block_prefix(backbone)
        for name, param in backbone.named_parameters():
            param.requires_grad_(param.requires_grad and name.startswith(prefix))
        return
    first_trained = last_stage_layer_id(backbone) if mode == "partial" else backbone.num_layer_ids
    for name, param in backbone.named_parameters():
        if backbone.layer_id(name) < first_trained:
            param.requires_grad_(False)


def eval_frozen_modules(module: nn.Module) -> None:
    """Put every submodule whose parameters are all frozen into eval mode, so BatchNorm statistics, dropout and drop
    path of the frozen parts behave as at inference; call it after Lightning switches the model to train mode."""
    for child in module.modules():
        params = list(child.parameters())
        if params and not any(param.requires_grad for param in params):
            child.eval()
