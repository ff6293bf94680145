"""LoRA: an unchanged encoder at initialisation, and only the adapters (and decoder) train in stage 1."""

import torch

from sonofm.sam import AdaptedSam, build_sam
from sonofm.sam.lora import LoRALinear


def test_lora_starts_as_the_identity_change():
    torch.manual_seed(0)
    sam = build_sam("vit_tiny", 64).eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        before = sam.image_encoder(images)
    model = AdaptedSam(sam, ["background", "a"], adapter="lora", lora_rank=2).eval()
    assert all(isinstance(block.attn.qkv, LoRALinear) for block in sam.image_encoder.blocks)
    with torch.inference_mode():
        torch.testing.assert_close(model.embed(images), before)


def test_stage_one_trains_lora_and_decoder_only_and_saves_only_those():
    model = AdaptedSam(build_sam("vit_tiny", 64), ["background", "a"], adapter="lora", lora_rank=2)
    model.set_trainable("adapt")
    trained = {name for name, param in model.named_parameters() if param.requires_grad}
    assert trained and all(".qkv.down." in n or ".qkv.up." in n or n.startswith("sam.mask_decoder.") for n in trained)
    assert any(".qkv.up." in name for name in trained)
    assert not any(name.startswith("sam.prompt_encoder.") for name in trained)
    assert set(model.adapted_state_dict()) == trained  # the saved file holds exactly what changed


def test_prompter_stage_freezes_the_adapted_encoder():
    model = AdaptedSam(build_sam("vit_tiny", 64), ["background", "a", "b"], adapter="lora", lora_rank=2)
    model.add_prompter(tokens_per_class=2, depth=1)
    model.set_trainable("prompter")
    trained = {name for name, param in model.named_parameters() if param.requires_grad}
    assert all(name.startswith(("prompter.", "sam.mask_decoder.")) for name in trained)
    assert any(name.startswith("prompter.") for name in trained)
    saved = set(model.adapted_state_dict())
    assert trained < saved and any(".qkv.up." in name for name in saved)  # the stage-1 LoRA travels with it
