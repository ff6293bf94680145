"""DetCon-B InfoNCE between anatomy embeddings of two views, negatives gathered across DDP ranks.

For an online prediction ``q`` of anatomy id ``k`` of image ``n`` in view a, the positives are the target
projections of the same image, the other view, the same id (the label mass split evenly among duplicates). The
negatives are every other target embedding of view b and of view a in the global batch (other anatomies of the same
image included), except the same image's same id in view a, which is left out. Logits are cosine similarities
over ``temperature``; each row's cross-entropy is weighted by 1 / (how often its id was drawn in that image), rows
of images without a shared id weigh 0; the loss is the weighted mean, summed over both directions (a->b, b->a).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn import functional as F

MASKED_LOGIT = -1e9


def gather_across_ranks(tensor: Tensor) -> tuple[Tensor, int]:
    """Concatenate ``tensor`` (no gradient) from every DDP rank along dim 0; returns it and this rank's offset."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor, 0
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts), dist.get_rank() * tensor.shape[0]


def detcon_loss(q_a: Tensor, q_b: Tensor, z_a: Tensor, z_b: Tensor, ids: Tensor, valid: Tensor,
                temperature: float = 0.1) -> Tensor:
    """q_* online predictions, z_* target projections (B, K, D); ids (B, K) shared by both views; valid (B,)."""
    z_a, z_b = F.normalize(z_a.float(), dim=-1).detach(), F.normalize(z_b.float(), dim=-1).detach()
    all_z_a, offset = gather_across_ranks(z_a)
    all_z_b, _ = gather_across_ranks(z_b)
    all_ids, _ = gather_across_ranks(ids)
    return (_one_direction(q_a, all_z_b, all_z_a, ids, all_ids, valid, offset, temperature)
            + _one_direction(q_b, all_z_a, all_z_b, ids, all_ids, valid, offset, temperature))


def _one_direction(q: Tensor, other: Tensor, same: Tensor, ids: Tensor, all_ids: Tensor, valid: Tensor,
                   offset: int, temperature: float) -> Tensor:
    batch, k, dim = q.shape
    q = F.normalize(q.float(), dim=-1).reshape(batch * k, dim)
    logits_other = q @ other.reshape(-1, dim).T / temperature  # (B*K, G*K)
    logits_same = q @ same.reshape(-1, dim).T / temperature
    row_image = torch.arange(batch, device=q.device).repeat_interleave(k) + offset  # global image of each row
    column_image = torch.arange(all_ids.shape[0], device=q.device).repeat_interleave(k)
    same_anatomy = (row_image[:, None] == column_image[None]) & (ids.reshape(-1, 1) == all_ids.reshape(1, -1))
    logits_same = logits_same.masked_fill(same_anatomy, MASKED_LOGIT)
    labels = same_anatomy.float()
    labels = labels / labels.sum(dim=1, keepdim=True).clamp(min=1)
    log_probs = torch.cat([logits_other, logits_same], dim=1).log_softmax(dim=1)
    cross_entropy = -(labels * log_probs[:, : labels.shape[1]]).sum(dim=1)
    duplicates = (ids[:, :, None] == ids[:, None, :]).sum(dim=2).reshape(-1).float()
    weights = valid.repeat_interleave(k).float() / duplicates
    return (weights * cross_entropy).sum() / weights.sum().clamp(min=1e-6)


def context_loss(prediction: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """BYOL regression ``2 - 2 cos`` between prediction and target (B, K, D), averaged over valid images (B,)."""
    cosine = (F.normalize(prediction.float(), dim=-1) * F.normalize(target.float(), dim=-1).detach()).sum(-1)
    per_image = (2 - 2 * cosine).mean(dim=1)
    weights = valid.float()
    return (per_image * weights).sum() / weights.sum().clamp(min=1e-6)
