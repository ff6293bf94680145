"""Batched decoding over prompts from several images equals the package's one-image decoder."""

import torch

from sonofm.sam import build_sam
from sonofm.sam.decoding import decode_masks


def test_batched_decoding_matches_the_package_decoder_per_image():
    torch.manual_seed(0)
    sam = build_sam("vit_tiny", 128).eval()
    embeddings = torch.randn(2, 64, 8, 8)
    points = torch.tensor([[[10.0, 20.0]], [[60.0, 70.0]], [[100.0, 5.0]]])
    labels = torch.ones(3, 1, dtype=torch.int64)
    image_index = torch.tensor([0, 1, 1])
    with torch.inference_mode():
        sparse, dense = sam.prompt_encoder(points=(points, labels), boxes=None, masks=None)
        logits, iou = decode_masks(sam.mask_decoder, embeddings, image_index, sam.prompt_encoder.get_dense_pe(),
                                   sparse, dense)
        assert logits.shape == (3, 1, 32, 32) and iou.shape == (3, 1)
        for image in (0, 1):
            chosen = image_index == image
            expected, expected_iou = sam.mask_decoder(embeddings[image:image + 1], sam.prompt_encoder.get_dense_pe(),
                                                      sparse[chosen], dense[chosen], multimask_output=False)
            torch.testing.assert_close(logits[chosen], expected, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(iou[chosen], expected_iou, rtol=1e-5, atol=1e-5)
