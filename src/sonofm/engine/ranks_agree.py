"""A check that every rank of a multi-process run ends training with the same weights and buffers."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy

from sonofm.errors import SonofmError


def state_digest(module: torch.nn.Module) -> tuple[list[str], torch.Tensor]:
    """Names and a ``(T, 3)`` float64 digest of every tensor in ``module.state_dict()``: the sum, the sum of
    squares and a position-weighted sum, which agree bit for bit between identical tensors on one platform."""
    names, rows = [], []
    for name, tensor in module.state_dict().items():
        values = tensor.detach().double().flatten()
        positions = torch.arange(1, values.numel() + 1, dtype=torch.float64, device=values.device)
        rows.append(torch.stack([values.sum(), values.square().sum(), (values * positions).sum()]))
        names.append(name)
    return names, torch.stack(rows) if rows else torch.zeros(0, 3, dtype=torch.float64)


class RanksAgree(L.Callback):
    """After ``fit`` on several processes, compare each rank's model with rank 0's; differing ranks (a buffer that
    was never synchronised, a parameter outside DDP) raise one SonofmError naming the first tensor that differs."""

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.world_size == 1 or isinstance(trainer.strategy, FSDPStrategy):  # FSDP ranks hold shards
            return
        names, digest = state_digest(pl_module)
        every = trainer.strategy.all_gather(digest)  # (world, T, 3)
        differing = (every != every[0]).any(dim=(0, 2))
        if bool(differing.any()):
            name = names[int(differing.nonzero()[0])]
            raise SonofmError(f"the {trainer.world_size} training processes ended with different weights "
                              f"(first: {name}); their results cannot be trusted")
