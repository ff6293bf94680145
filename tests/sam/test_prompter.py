"""The class prompter: a mask per foreground class from one decoder pass, and an argmax anatomy map."""

import torch

from sonofm.sam import AdaptedSam, build_sam


def test_one_mask_per_class_and_scores_for_an_anatomy_map():
    torch.manual_seed(0)
    model = AdaptedSam(build_sam("vit_tiny", 64), ["background", "a", "b"], adapter="frozen").eval()
    prompter = model.add_prompter(tokens_per_class=3, depth=2)
    images = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        embeddings = model.embed(images)
        tokens = prompter(embeddings, model.sam.prompt_encoder.get_dense_pe())
        logits = model.class_logits(embeddings)
        scores = model.predict(images)
    assert tokens.shape == (2, 2, 3, 64)
    assert logits.shape == (2, 2, 64, 64)
    assert scores.shape == (2, 3, 64, 64)
    assert torch.all(scores[:, 0] == 0.5)
    torch.testing.assert_close(scores[:, 1:], logits.sigmoid())


def test_classes_get_different_masks():
    torch.manual_seed(0)
    model = AdaptedSam(build_sam("vit_tiny", 64), ["background", "a", "b"], adapter="frozen").eval()
    model.add_prompter()
    with torch.inference_mode():
        logits = model.class_logits(model.embed(torch.randn(1, 3, 64, 64)))
    assert not torch.allclose(logits[0, 0], logits[0, 1])
