"""BatchNorm over the global batch of a multi-process run, on GPUs (torch's SyncBatchNorm) and on CPUs (gloo).

torch's ``nn.SyncBatchNorm`` refuses CPU tensors, so CPU runs (and their 2-process tests) use
:class:`GlobalBatchNorm`: each rank sums its features and squared features per channel, one all-reduce adds them
up, and every rank normalises with the statistics of the whole global batch. Gradients flow through the all-reduce,
so training equals single-process training on the concatenated batch. Outside training, or without a process group,
it is the plain BatchNorm it replaced. Its state-dict keys are BatchNorm's: checkpoints and exports do not change.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.plugins.layer_sync import LayerSync
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class _SumOverRanks(torch.autograd.Function):
    """``all_reduce(SUM)`` with its gradient: every rank's output is used by every rank's loss, so the gradient of
    a rank's input is the sum of the output gradients of all ranks."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total)
        return total


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm (any of 1d/2d/3d) whose training statistics are those of the batch of all ranks together.

    Input ``[N, C, *]``; statistics are computed in float32 whatever the autocast dtype.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input [N, C, ...], got {input.dim()}D")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [0, *range(2, input.dim())]
        features = input.float()
        count = torch.full((1,), input.numel() / input.size(1), dtype=torch.float32, device=input.device)
        local = torch.cat([features.sum(dims), (features * features).sum(dims), count])
        total = _SumOverRanks.apply(local)
        channels = input.size(1)
        n = total[-1]
        mean = total[:channels] / n
        var = (total[channels:2 * channels] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), float(n))
        shape = [1, channels] + [1] * (input.dim() - 2)
        out = (features - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, n: float) -> None:
        """BatchNorm's rule: exponential (or, with ``momentum=None``, cumulative) average; unbiased variance."""
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_((var * n / max(n - 1, 1)).to(self.running_var.dtype), momentum)


def to_global_batchnorm(module: nn.Module, cls: type[_BatchNorm] | None = None) -> nn.Module:
    """``module`` with every BatchNorm layer replaced by a ``cls`` layer (default :class:`GlobalBatchNorm`) holding
    the same parameters and buffers, so an optimiser built before or after sees the same tensors."""
    cls = cls or GlobalBatchNorm
    if isinstance(module, _BatchNorm) and not isinstance(module, (GlobalBatchNorm, nn.SyncBatchNorm)):
        synced = _moved(module, cls(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats))
        synced.original_class = type(module)
        return synced
    for name, child in module.named_children():
        module.add_module(name, to_global_batchnorm(child, cls))
    return module


def to_plain_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`to_global_batchnorm`: each layer back to the BatchNorm class it was, same tensors."""
    if isinstance(module, (GlobalBatchNorm, nn.SyncBatchNorm)):
        original = getattr(module, "original_class", nn.BatchNorm2d)
        return _moved(module, original(module.num_features, module.eps, module.momentum, module.affine,
                                       module.track_running_stats))
    for name, child in module.named_children():
        module.add_module(name, to_plain_batchnorm(child))
    return module


def _moved(source: _BatchNorm, target: _BatchNorm) -> _BatchNorm:
    """``target`` holding ``source``'s parameters, buffers and train/eval mode."""
    if source.affine:
        target.weight, target.bias = source.weight, source.bias
    if source.track_running_stats:
        target.running_mean, target.running_var = source.running_mean, source.running_var
        target.num_batches_tracked = source.num_batches_tracked
    return target.train(source.training)


class GlobalBatchNormSync(LayerSync):
    """Lightning plugin: under DDP, BatchNorm layers normalise over the global batch while fitting, and are plain
    BatchNorm again afterwards.

    On CUDA the layers are torch's ``SyncBatchNorm`` (fused kernels, NCCL); elsewhere :class:`GlobalBatchNorm`.
    """

    def __init__(self, on_cuda: bool) -> None:
        self.on_cuda = on_cuda

    def apply(self, model: nn.Module) -> nn.Module:
        return to_global_batchnorm(model, nn.SyncBatchNorm if self.on_cuda else GlobalBatchNorm)

    def revert(self, model: nn.Module) -> nn.Module:
        return to_plain_batchnorm(model)
