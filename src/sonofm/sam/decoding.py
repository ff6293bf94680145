"""SAM's mask decoder over many prompts on a batch of images: each image embedding computed once, shared by its prompts.

The package's ``MaskDecoder.forward`` takes one image and repeats its embedding for every prompt; this runs the
decoder's own modules on ``P`` prompts from ``B`` images in one pass, each prompt reading its image's embedding.
"""

from __future__ import annotations

import torch
from segment_anything.modeling import MaskDecoder
from torch import Tensor


def decode_masks(decoder: MaskDecoder, image_embeddings: Tensor, image_index: Tensor, image_pe: Tensor,
                 sparse: Tensor, dense: Tensor) -> tuple[Tensor, Tensor]:
    """Single-mask SAM decoding (the decoder's first mask token) for ``P`` prompts.

    image_embeddings: (B, C, h, w); image_index: (P,) image of each prompt; image_pe: (1, C, h, w);
    sparse: (P, T, C) prompt tokens; dense: (P, C, h, w) or (1, C, h, w).
    Returns low-resolution mask logits (P, 1, 4h, 4w) and predicted mask IoU (P, 1); equal to the package's
    ``MaskDecoder(..., multimask_output=False)`` for one image.
    """
    prompts = sparse.shape[0]
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([output_tokens.unsqueeze(0).expand(prompts, -1, -1).to(sparse.dtype), sparse], dim=1)
    src = image_embeddings[image_index] + dense
    pos_src = image_pe.expand(prompts, -1, -1, -1)
    batch, channels, height, width = src.shape
    hidden, src = decoder.transformer(src, pos_src, tokens)
    iou_token, mask_token = hidden[:, 0], hidden[:, 1]
    upscaled = decoder.output_upscaling(src.transpose(1, 2).reshape(batch, channels, height, width))
    hyper = decoder.output_hypernetworks_mlps[0](mask_token)  # (P, C')
    masks = torch.einsum("pc,pchw->phw", hyper, upscaled).unsqueeze(1)
    iou = decoder.iou_prediction_head(iou_token)[:, :1]
    return masks, iou
