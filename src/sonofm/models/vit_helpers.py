"""Pieces shared by the ViT backbones: input checks, the block loop, intermediate maps, layer ids."""

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from sonofm.errors import SonofmError
from sonofm.models.registry import register_backbone

STEM_PARAMS = frozenset({"cls_token", "mask_token", "pos_embed", "patch_embed"})

# ViT sizes: (embed_dim, depth, num_heads).
VIT_SHAPES = {"tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12)}


def register_vit_sizes(prefix: str, vit_class: type[nn.Module], patch_size: int) -> None:
    """Register ``{prefix}_{tiny,small,base}_patch{patch_size}``; the caller's keyword arguments override the size's
    shape."""
    for size, (embed_dim, depth, num_heads) in VIT_SHAPES.items():
        shape = {"embed_dim": embed_dim, "depth": depth, "num_heads": num_heads}
        builder = partial(_build_vit, vit_class, shape)
        register_backbone(f"{prefix}_{size}_patch{patch_size}", patch_size=patch_size)(builder)


def _build_vit(vit_class: type[nn.Module], shape: dict, img_size: int = 224, **overrides) -> nn.Module:
    return vit_class(img_size=img_size, **(shape | overrides))


def check_image_batch(x: Tensor, img_size: tuple[int, int]) -> None:
    """Refuse a batch that is not ``(B, 3, *img_size)``, naming the flag that fixes it."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise SonofmError(f"expected an image batch of shape (B, 3, H, W), got {tuple(x.shape)}")
    height, width = x.shape[-2:]
    if (height, width) != tuple(img_size):
        raise SonofmError(
            f"input {height}x{width} but the model was built for {img_size[0]}x{img_size[1]}; "
            f"pass --img-size {height}"
        )


def run_block(block: nn.Module, x: Tensor, use_checkpoint: bool, **block_kwargs: Tensor) -> Tensor:
    """One transformer block, recomputed in backward (activation checkpointing) when asked and training.

    ``block_kwargs`` go to the block's forward (e.g. a shared relative position bias).
    """
    if use_checkpoint and torch.is_grad_enabled():
        return checkpoint(block, x, use_reentrant=False, **block_kwargs)
    return block(x, **block_kwargs)


def absolute_block_indices(indices: Sequence[int], depth: int) -> list[int]:
    """Python-style block indices (negative counts from the end) as 0..depth-1."""
    resolved = []
    for index in indices:
        if not -depth <= index < depth:
            raise SonofmError(f"block index {index} is out of range for a {depth}-block backbone")
        resolved.append(index % depth)
    return resolved


def tokens_to_map(tokens: Tensor, grid_size: tuple[int, int]) -> Tensor:
    """Spatial tokens ``(B, h*w, C)`` in row-major order -> feature map ``(B, C, h, w)``."""
    batch, _, channels = tokens.shape
    return tokens.transpose(1, 2).reshape(batch, channels, *grid_size)


def vit_layer_id(param_name: str, depth: int) -> int:
    """Layer-decay group: 0 for embeddings and tokens, i+1 for ``blocks.i``, depth+1 for the rest.

    The rest is the final norm and, as in BEiT's layer decay, a relative position table shared by all blocks.
    """
    root, _, rest = param_name.partition(".")
    if root in STEM_PARAMS:
        return 0
    if root == "blocks":
        return int(rest.partition(".")[0]) + 1
    return depth + 1


class ViTBackboneMixin:
    """The token-level interface of a ViT backbone on top of ``_embed`` and ``blocks``.

    The host class provides ``_embed(x) -> (B, P + N, C)``, ``blocks``, ``norm``, ``depth``, ``grid_size``,
    ``num_prefix_tokens`` and ``grad_checkpointing``; it may override ``_block_kwargs``.
    """

    def _record_geometry(self, img_size: int, depth: int) -> None:
        """Set ``img_size``, ``patch_size``, ``grid_size``, ``depth``, ``num_layer_ids`` (stem, blocks, final norm),
        ``head_layer_id`` (BEiT's and USFM's rule: everything above the last block, the heads included, shares the top
        id ``depth + 1``) and ``last_stage_layer_id`` (the last block; partial fine-tuning trains it and the final norm
        above it)."""
        self.img_size = img_size
        self.patch_size = self.patch_embed.patch_size[0]
        assert img_size % self.patch_size == 0, (
            f"img_size {img_size} is not a multiple of the patch size {self.patch_size}: edge pixels would be dropped")
        self.grid_size: tuple[int, int] = tuple(self.patch_embed.grid_size)
        self.depth = depth
        self.num_layer_ids = depth + 2
        self.head_layer_id = depth + 1
        self.last_stage_layer_id = depth

    def forward_tokens(self, x: Tensor) -> Tensor:
        """Images ``(B, 3, H, W)`` -> last block's tokens ``(B, P + N, C)`` before the final norm."""
        return self._run_blocks(self._embed(x))

    def forward_features(self, x: Tensor) -> Tensor:
        """Final-normed tokens ``(B, P + N, C)``."""
        return self.norm(self.forward_tokens(x))

    def forward(self, x: Tensor) -> Tensor:
        """Same as ``forward_tokens``."""
        return self.forward_tokens(x)

    def forward_intermediates(self, x: Tensor, indices: Sequence[int]) -> list[Tensor]:
        """Outputs of the blocks at ``indices`` (before any norm, prefix tokens dropped) as ``(B, C, h, w)`` maps."""
        wanted = absolute_block_indices(indices, self.depth)
        tokens = self._embed(x)
        block_kwargs = self._block_kwargs()
        taken: dict[int, Tensor] = {}
        for index, block in enumerate(self.blocks[: max(wanted, default=-1) + 1]):
            tokens = run_block(block, tokens, self.grad_checkpointing, **block_kwargs)
            if index in wanted:
                taken[index] = tokens
        return [tokens_to_map(taken[i][:, self.num_prefix_tokens :], self.grid_size) for i in wanted]

    def layer_id(self, param_name: str) -> int:
        """Layer-decay group of a parameter: 0 stem/tokens, i+1 for ``blocks.i``, depth+1 for the final norm."""
        return vit_layer_id(param_name, self.depth)

    def _block_kwargs(self) -> dict[str, Tensor]:
        """Extra keyword arguments for every block's forward, computed once per forward pass; none by default."""
        return {}

    def _run_blocks(self, tokens: Tensor) -> Tensor:
        block_kwargs = self._block_kwargs()
        for block in self.blocks:
            tokens = run_block(block, tokens, self.grad_checkpointing, **block_kwargs)
        return tokens
