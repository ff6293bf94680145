"""Finding the parameters a forward path never reads, so training can leave them out (and DDP does not wait for
their gradients)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

Features = Tensor | Sequence[Tensor]


def freeze_unread_parameters(module: nn.Module, forward: Callable[[Tensor], Features], img_size: int) -> list[str]:
    """Set ``requires_grad`` on each parameter of ``module`` to whether ``forward`` (images ``(B, 3, S, S)`` -> a
    tensor or a list of them) reads it; return the names of those it does not read.

    One forward and backward pass on a blank ``(1, 3, img_size, img_size)`` batch in eval mode (no running statistic
    moves); the training mode is restored. Under inference mode, where nothing trains, nothing is changed.
    """
    if torch.is_inference_mode_enabled():
        return []
    named = dict(module.named_parameters())
    was_training = module.training
    module.eval().requires_grad_(True)
    try:
        with torch.enable_grad():
            device = next(iter(named.values())).device
            outputs = forward(torch.zeros(1, 3, img_size, img_size, device=device))
            outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
            total = sum(output.float().sum() for output in outputs)
            gradients = torch.autograd.grad(total, list(named.values()), allow_unused=True)
    finally:
        module.train(was_training)
    for param, gradient in zip(named.values(), gradients, strict=True):
        param.requires_grad_(gradient is not None)
    return [name for (name, _), gradient in zip(named.items(), gradients, strict=True) if gradient is None]
