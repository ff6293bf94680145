"""The ACLUS networks and objective: one ResNet-FPN pass per network per step, four scales pooled from it.

Online network = ResNet-FPN + projectors (C5: its own; P4/P3/P2: one shared) + a predictor shared by all scales;
the target network is an EMA copy of the online network without the predictor. A step feeds the online network
[view a, view b, corrupted core] and the target network [view a, view b, clean core] (each one batched pass), pools
every scale on the same anatomy ids for both networks (views and core in one pass when the core has the views'
size, else one pass each), and sums per scale the DetCon-B loss between the views and
``context_weight`` x the regression of the clean core's target embeddings from the corrupted core's predictions.

Only mask-pooled features are ever used, so the FPN's 3x3 smoothing convs are applied to pooled vectors
(``pool_through_conv``, exact) instead of whole maps: at 224 px they would cost more than the ResNet-18 itself.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from sonofm.methods.aclus.corruption import CorruptionConfig
from sonofm.methods.aclus.loss import context_loss, detcon_loss
from sonofm.methods.aclus.pooling import id_fractions, id_presence, pool_features, pool_through_conv, sample_ids
from sonofm.models.resnet_fpn import FPN_CHANNELS, SCALES, ResNetFPN

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class AclusConfig:
    """Method settings (``--set aclus.<key>=...``).

    ``background``: whether id 0 counts as an anatomy (the reference counts it, including the black area around
    the fan). ``sample_by_area``: draw ids in proportion to their area instead of uniformly. ``core_size``: the side
    the core (the views' overlap, on average smaller than a view) is rendered at; None: half the view size rounded
    to a multiple of 32 (128 for 224 px views; the reference renders it at the view size).
    """

    def resolved_core_size(self, img_size: int) -> int:
        return self.core_size or max(32, 32 * round(img_size / 64))

    num_ids: int = 16
    core_size: int | None = None
    temperature: float = 0.1
    context_weight: float = 1.0
    background: bool = True
    sample_by_area: bool = False
    crop_scale: tuple[float, float] = (0.08, 1.0)
    projector_hidden: int = 1024
    predictor_hidden: int = 4096
    embedding_dim: int = 256
    ema_base: float = 0.99
    corruption: CorruptionConfig = field(default_factory=CorruptionConfig)


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Linear -> BatchNorm1d -> ReLU -> Linear, applied to (N, K, D) through a (N*K, D) view."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, out_dim))


def _apply_rows(head: nn.Module, x: Tensor) -> Tensor:
    return head(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)


class AclusNetwork(nn.Module):
    """ResNet-FPN + projectors: images and per-image anatomy fractions -> an embedding per scale and id."""

    def __init__(self, model: str, img_size: int, config: AclusConfig) -> None:
        super().__init__()
        self.fpn = ResNetFPN(model, img_size)
        self.project_c5 = mlp(self.fpn.c5_channels, config.projector_hidden, config.embedding_dim)
        self.project_fpn = mlp(FPN_CHANNELS, config.projector_hidden, config.embedding_dim)

    def forward(self, images: Tensor, fractions: Tensor) -> list[Tensor]:
        """images (N, 3, S, S) normalised, fractions (N, K, S/4, S/4) -> [(N, K, D)] for c5, p4, p3, p2."""
        features = self.fpn.forward_unsmoothed(images.contiguous(memory_format=torch.channels_last))
        outputs = [_apply_rows(self.project_c5, pool_features(features["c5"], fractions))]
        for scale in SCALES[1:]:  # only pooled P levels are used, so the 3x3 convs run on pooled vectors
            pooled = pool_through_conv(self.fpn.smoothing(scale), features[scale], fractions)
            outputs.append(_apply_rows(self.project_fpn, pooled))
        return outputs


class AclusModel(nn.Module):
    """Online network, predictor, EMA target; :meth:`losses` computes one step's objective."""

    def __init__(self, model: str = "resnet18", img_size: int = 224, config: AclusConfig | None = None) -> None:
        super().__init__()
        self.config = config or AclusConfig()
        self.online = AclusNetwork(model, img_size, self.config)
        self.predictor = mlp(self.config.embedding_dim, self.config.predictor_hidden, self.config.embedding_dim)
        self.target = copy.deepcopy(self.online)
        self.target.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.to(memory_format=torch.channels_last)

    @property
    def backbone(self) -> nn.Module:
        """The online ResNet: what pretraining exports."""
        return self.online.fpn.backbone

    def losses(self, views: Tensor, view_masks: Tensor, core: Tensor, corrupted: Tensor, core_masks: Tensor,
               core_valid: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        """views (2, B, 3, S, S) and core, corrupted (B, 3, C, C) in [0, 1]; view_masks (2, B, S, S) and core_masks
        (B, C, C) int64 id maps; core_valid (B,) bool (False when the views did not overlap).

        Returns ``loss``, ``contrast`` and ``context`` (sums over the scales) and per-scale terms.
        """
        config = self.config
        batch = core.shape[0]
        num_ids = int(max(view_masks.max(), core_masks.max())) + 1
        shared = torch.minimum(id_presence(view_masks[0], num_ids, config.background),
                               id_presence(view_masks[1], num_ids, config.background))
        view_ids, view_valid = sample_ids(shared, config.num_ids, generator, config.sample_by_area)
        core_ids, core_has_ids = sample_ids(id_presence(core_masks, num_ids, config.background), config.num_ids,
                                            generator, config.sample_by_area)
        view_fractions = torch.cat([id_fractions(view_masks[0], view_ids, views.shape[-1] // 4),
                                    id_fractions(view_masks[1], view_ids, views.shape[-1] // 4)])
        core_fractions = id_fractions(core_masks, core_ids, core.shape[-1] // 4)
        online = self._embed(self.online, torch.cat([views[0], views[1]]), view_fractions, corrupted, core_fractions)
        with torch.no_grad():
            target = self._embed(self.target, torch.cat([views[0], views[1]]), view_fractions, core, core_fractions)
        context_valid = core_valid & core_has_ids
        out: dict[str, Tensor] = {}
        for scale, online_scale, target_scale in zip(SCALES, online, target):
            q = _apply_rows(self.predictor, online_scale)
            q_a, q_b, q_core = q.split(batch)
            z_a, z_b, z_core = target_scale.split(batch)
            out[f"contrast_{scale}"] = detcon_loss(q_a, q_b, z_a, z_b, view_ids, view_valid, config.temperature)
            out[f"context_{scale}"] = context_loss(q_core, z_core, context_valid)
        out["contrast"] = sum(out[f"contrast_{scale}"] for scale in SCALES)
        out["context"] = sum(out[f"context_{scale}"] for scale in SCALES)
        out["loss"] = out["contrast"] + config.context_weight * out["context"]
        return out

    def _embed(self, network: AclusNetwork, views: Tensor, view_fractions: Tensor, core: Tensor,
               core_fractions: Tensor) -> list[Tensor]:
        """Per scale, embeddings of the views then the core: one pass when they share a size, else one each."""
        if views.shape[-1] == core.shape[-1]:
            return network(self._normalise(torch.cat([views, core])), torch.cat([view_fractions, core_fractions]))
        both = zip(network(self._normalise(views), view_fractions), network(self._normalise(core), core_fractions))
        return [torch.cat([for_views, for_core]) for for_views, for_core in both]

    def _normalise(self, images: Tensor) -> Tensor:
        return (images - self.mean) / self.std

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """target <- momentum * target + (1 - momentum) * online, for parameters (BN statistics stay the target's)."""
        target = list(self.target.parameters())
        online = [param.detach() for param in self.online.parameters()]
        torch._foreach_mul_(target, momentum)
        torch._foreach_add_(target, online, alpha=1 - momentum)


def ema_momentum(step: int, total_steps: int, base: float) -> float:
    """BYOL's schedule: ``1 - (1 - base) * (cos(pi * step / total) + 1) / 2``, from ``base`` at step 0 to 1."""
    progress = min(1.0, step / max(1, total_steps))
    return 1 - (1 - base) * (math.cos(math.pi * progress) + 1) / 2
