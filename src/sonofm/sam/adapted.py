"""A-SAM: SAM with parameter-efficient encoder tuning, a trainable mask decoder and an optional class prompter.

Saved runs hold only what differs from the base SAM checkpoint (LoRA factors, the mask decoder, the prompter, and the
encoder when it was fully tuned) plus the metadata to rebuild the model from that checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from segment_anything.modeling import Sam
from torch import Tensor, nn
from torch.nn import functional as F

from sonofm.errors import SonofmError
from sonofm.runs.model_file import load_model_state, read_model_metadata
from sonofm.sam.checkpoint import load_sam
from sonofm.sam.decoding import decode_masks
from sonofm.sam.lora import add_lora, is_lora_parameter
from sonofm.sam.prompter import ClassPrompter
from sonofm.sam.prompts import Prompts

ENCODER_TUNINGS = ("lora", "full", "frozen")
BACKGROUND_SCORE = 0.5  # a pixel is background unless some class's probability beats this
# SAM's mask decoder parts sonofm never uses: one mask per prompt comes from the first hypernetwork MLP, and no IoU
# prediction is made. They stay frozen, keep their checkpoint values and are not saved (files from sonofm 0.1 runs
# that hold them still load; their values never reach an output).
UNUSED_DECODER_PARTS = ("sam.mask_decoder.iou_prediction_head.",
                        *(f"sam.mask_decoder.output_hypernetworks_mlps.{index}." for index in (1, 2, 3)))


class AdaptedSam(nn.Module):
    """``Sam`` + LoRA (``encoder_tuning="lora"``) + optional :class:`ClassPrompter`.

    classes: mask class names, background first. Images are (B, 3, S, S), ImageNet-normalised (the same pixel
    statistics SAM normalises with), S = the SAM's input size.
    """

    def __init__(self, sam: Sam, classes: list[str], encoder_tuning: str = "lora", lora_rank: int = 4) -> None:
        super().__init__()
        if encoder_tuning not in ENCODER_TUNINGS:
            raise SonofmError(f"encoder_tuning must be one of {', '.join(ENCODER_TUNINGS)}, got {encoder_tuning!r}")
        self.sam = sam
        self.classes = list(classes)
        self.encoder_tuning = encoder_tuning
        if encoder_tuning == "lora":
            add_lora(sam.image_encoder, lora_rank)
        self.prompter: ClassPrompter | None = None

    @property
    def img_size(self) -> int:
        return self.sam.image_encoder.img_size

    def add_prompter(self, tokens_per_class: int = 2, depth: int = 2) -> ClassPrompter:
        dim = self.sam.prompt_encoder.embed_dim
        self.prompter = ClassPrompter(len(self.classes) - 1, dim, tokens_per_class, depth)
        return self.prompter

    def embed(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) -> image embeddings (B, C, S/16, S/16)."""
        return self.sam.image_encoder(images)

    def prompted_logits(self, embeddings: Tensor, prompts: Prompts) -> Tensor:
        """Mask logits (P, S, S) for ``prompts`` on images with ``embeddings`` (B, C, h, w)."""
        sparse, dense = prompts.embed(self.sam.prompt_encoder)
        low_res, _ = decode_masks(self.sam.mask_decoder, embeddings, prompts.image_index,
                                  self.sam.prompt_encoder.get_dense_pe(), sparse.to(embeddings.dtype), dense)
        return self._upsample(low_res)[:, 0]

    def class_logits(self, embeddings: Tensor) -> Tensor:
        """Automatic prompting: mask logits (B, F, S, S) for every foreground class of every image."""
        if self.prompter is None:
            raise SonofmError("this A-SAM has no automatic prompter; train one with `sonofm sam train-prompter`")
        batch = embeddings.shape[0]
        image_pe = self.sam.prompt_encoder.get_dense_pe()
        tokens = self.prompter(embeddings, image_pe)  # (B, F, T, C)
        foreground = tokens.shape[1]
        image_index = torch.arange(batch, device=embeddings.device).repeat_interleave(foreground)
        dense = self.sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        low_res, _ = decode_masks(self.sam.mask_decoder, embeddings, image_index, image_pe,
                                  tokens.flatten(0, 1), dense.expand(1, -1, *embeddings.shape[-2:]))
        return self._upsample(low_res).view(batch, foreground, self.img_size, self.img_size)

    def predict(self, images: Tensor) -> Tensor:
        """Class scores (B, K, S, S) for an argmax anatomy map: background scores 0.5, class k its probability."""
        probs = self.class_logits(self.embed(images)).float().sigmoid()
        background = torch.full_like(probs[:, :1], BACKGROUND_SCORE)
        return torch.cat([background, probs], dim=1)

    def _upsample(self, low_res: Tensor) -> Tensor:
        return F.interpolate(low_res, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)

    def set_trainable(self, stage: str) -> None:
        """``stage="adapt"``: the encoder's LoRA factors (or the whole encoder) and the mask decoder train;
        ``stage="prompter"``: the prompter and the mask decoder train. Everything else is frozen, and so are the
        decoder parts sonofm never uses."""
        for name, param in self.named_parameters():
            if stage == "adapt":
                param.requires_grad = self._is_adapted(name) and not name.startswith("prompter.")
            else:
                param.requires_grad = self._is_adapted(name) and name.startswith(("sam.mask_decoder.", "prompter."))

    def adapted_state_dict(self) -> dict[str, Tensor]:
        """The tensors that differ from the base SAM checkpoint."""
        return {name: value for name, value in self.state_dict().items() if self._is_adapted(name)}

    def _is_adapted(self, name: str) -> bool:
        if name.startswith(UNUSED_DECODER_PARTS):  # no gradient ever reaches them (DDP would stop on them)
            return False
        return (name.startswith(("sam.mask_decoder.", "prompter.")) or is_lora_parameter(name)
                or (self.encoder_tuning == "full" and name.startswith("sam.image_encoder.")))

    # Layer-wise LR decay does not apply to A-SAM: one layer id for everything.
    num_layer_ids = 1

    def layer_id(self, name: str) -> int:
        return 0

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"task": "sam", "classes": self.classes, "encoder_tuning": self.encoder_tuning,
                                "img_size": self.img_size}
        if self.encoder_tuning == "lora":
            meta["lora_rank"] = self.sam.image_encoder.blocks[0].attn.qkv.down.out_features
        if self.prompter is not None:
            meta["prompter"] = {"tokens_per_class": self.prompter.tokens_per_class, "depth": len(self.prompter.blocks)}
        return meta


def build_adapted_sam(sam_checkpoint: str | Path, sam_type: str, img_size: int, classes: list[str],
                      encoder_tuning: str = "lora", lora_rank: int = 4) -> AdaptedSam:
    """Load the base SAM from ``sam_checkpoint`` at ``img_size`` and wrap it."""
    return AdaptedSam(load_sam(sam_checkpoint, sam_type, img_size), classes, encoder_tuning, lora_rank)


def load_adapted_sam(model_file: str | Path) -> AdaptedSam:
    """Rebuild an A-SAM from a run's ``model.safetensors`` and the base checkpoint its metadata names."""
    meta = read_model_metadata(model_file)
    if meta.get("task") != "sam":
        raise SonofmError(f"{model_file} is not an A-SAM model (task {meta.get('task')!r}); use a `sonofm sam` run")
    checkpoint = Path(meta["sam_checkpoint"])
    if not checkpoint.is_file():
        raise SonofmError(f"base SAM checkpoint {checkpoint} (named in {model_file}) not found")
    model = build_adapted_sam(checkpoint, meta["sam_type"], meta["img_size"], meta["classes"],
                              meta["encoder_tuning"], meta.get("lora_rank", 4))
    if "prompter" in meta:
        model.add_prompter(**meta["prompter"])
    state = {name: value for name, value in load_model_state(model_file).items()
             if not name.startswith(UNUSED_DECODER_PARTS)}
    wanted = model.adapted_state_dict()
    missing, unexpected = sorted(set(wanted) - set(state)), sorted(set(state) - set(wanted))
    if missing or unexpected:
        raise SonofmError(f"{model_file} does not match its A-SAM: missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.load_state_dict(state, strict=False)
    return model.eval()
