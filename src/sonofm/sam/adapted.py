"""A-SAM: SAM adapted to ultrasound (SAMUS's encoder, LoRA, or a tuned/frozen encoder) and an optional class prompter.

Saved runs hold only what differs from the base SAM checkpoint (the SAMUS parts or LoRA factors, the mask decoder,
the prompter, and the encoder when it was fully tuned) plus the metadata to rebuild the model from that checkpoint.
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
from sonofm.sam.samus import SamusImageEncoder

ADAPTERS = ("samus", "lora", "full", "frozen")
BACKGROUND_SCORE = 0.5  # a pixel is background unless some class's probability beats this
# SAM's mask decoder parts sonofm never uses: one mask per prompt comes from the first hypernetwork MLP, and no IoU
# prediction is made. They stay frozen, keep their checkpoint values and are not saved (files from sonofm 0.1 runs
# that hold them still load; their values never reach an output).
UNUSED_DECODER_PARTS = ("sam.mask_decoder.iou_prediction_head.",
                        *(f"sam.mask_decoder.output_hypernetworks_mlps.{index}." for index in (1, 2, 3)))


class AdaptedSam(nn.Module):
    """``Sam`` adapted by ``adapter`` + optional :class:`ClassPrompter`.

    adapter: ``samus`` (``sam`` must have SAMUS's encoder, :func:`~sonofm.sam.registry.build_sam` ``samus=True``;
    SAMUS's parts and the global blocks' position tables train, the decoder stays frozen in stage 1), ``lora`` (rank
    ``lora_rank`` on every block's qkv, with the mask decoder), ``full`` (encoder and decoder) or ``frozen`` (decoder).
    classes: mask class names, background first. Images are (B, 3, S, S), ImageNet-normalised (the same pixel
    statistics SAM normalises with), S = the SAM's input size.
    """

    def __init__(self, sam: Sam, classes: list[str], adapter: str = "samus", lora_rank: int = 4) -> None:
        super().__init__()
        if adapter not in ADAPTERS:
            raise SonofmError(f"adapter must be one of {', '.join(ADAPTERS)}, got {adapter!r}")
        if (adapter == "samus") != isinstance(sam.image_encoder, SamusImageEncoder):
            raise SonofmError(f"adapter {adapter!r} does not match the SAM's image encoder")
        self.sam = sam
        self.classes = list(classes)
        self.adapter = adapter
        if adapter == "lora":
            add_lora(sam.image_encoder, lora_rank)
        self._samus_names = ({f"sam.image_encoder.{name}" for name in sam.image_encoder.trainable_names()}
                             if adapter == "samus" else set())
        self.prompter: ClassPrompter | None = None

    @property
    def img_size(self) -> int:
        return self.sam.image_encoder.img_size

    def add_prompter(self, tokens_per_class: int = 2, depth: int = 4) -> ClassPrompter:
        dim = self.sam.prompt_encoder.embed_dim
        self.prompter = ClassPrompter(len(self.classes) - 1, dim, tokens_per_class, depth)
        return self.prompter

    def embed(self, images: Tensor) -> Tensor:
        """(B, 3, S, S) -> image embeddings (B, C, h, w): S/16 on a side, S/8 with SAMUS's encoder."""
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
        return self.class_scores(self.embed(images))

    def class_scores(self, embeddings: Tensor) -> Tensor:
        """:meth:`predict`'s class scores from image embeddings (B, C, h, w)."""
        probs = self.class_logits(embeddings).float().sigmoid()
        background = torch.full_like(probs[:, :1], BACKGROUND_SCORE)
        return torch.cat([background, probs], dim=1)

    def _upsample(self, low_res: Tensor) -> Tensor:
        return F.interpolate(low_res, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)

    def set_trainable(self, stage: str) -> None:
        """``stage="adapt"``: the adapter's parameters train (SAMUS's parts and tables; LoRA factors or the whole
        encoder with the mask decoder; the decoder alone for a frozen encoder); ``stage="prompter"``: the prompter and
        the mask decoder train. Everything else is frozen, and so are the decoder parts sonofm never uses."""
        for name, param in self.named_parameters():
            if stage == "adapt":
                decoder = name.startswith("sam.mask_decoder.") and self.adapter != "samus"
                param.requires_grad = self._is_adapted(name) and (decoder or name.startswith("sam.image_encoder."))
            else:
                param.requires_grad = self._is_adapted(name) and name.startswith(("sam.mask_decoder.", "prompter."))

    def adapted_state_dict(self) -> dict[str, Tensor]:
        """The tensors that differ from the base SAM checkpoint."""
        return {name: value for name, value in self.state_dict().items() if self._is_adapted(name)}

    def _is_adapted(self, name: str) -> bool:
        if name.startswith(UNUSED_DECODER_PARTS):  # no gradient ever reaches them (DDP would stop on them)
            return False
        return (name.startswith(("sam.mask_decoder.", "prompter.")) or is_lora_parameter(name)
                or name in self._samus_names or (self.adapter == "full" and name.startswith("sam.image_encoder.")))

    # Layer-wise LR decay does not apply to A-SAM: one layer id for everything.
    num_layer_ids = 1

    def layer_id(self, name: str) -> int:
        return 0

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"task": "sam", "classes": self.classes, "adapter": self.adapter,
                                "img_size": self.img_size}
        if self.adapter == "lora":
            meta["lora_rank"] = self.sam.image_encoder.blocks[0].attn.qkv.down.out_features
        if self.prompter is not None:
            meta["prompter"] = {"tokens_per_class": self.prompter.tokens_per_class, "depth": len(self.prompter.blocks)}
        return meta


def build_adapted_sam(sam_checkpoint: str | Path, sam_type: str, img_size: int, classes: list[str],
                      adapter: str = "samus", lora_rank: int = 4) -> AdaptedSam:
    """Load the base SAM from ``sam_checkpoint`` at ``img_size`` (with SAMUS's encoder for ``adapter="samus"``) and
    wrap it; ``model.sam.load_report`` says what was loaded, resized and newly initialised."""
    return AdaptedSam(load_sam(sam_checkpoint, sam_type, img_size, samus=adapter == "samus"), classes, adapter,
                      lora_rank)


def load_adapted_sam(model_file: str | Path) -> AdaptedSam:
    """Rebuild an A-SAM from a run's ``model.safetensors`` and the base checkpoint its metadata names."""
    meta = read_model_metadata(model_file)
    if meta.get("task") != "sam":
        raise SonofmError(f"{model_file} is not an A-SAM model (task {meta.get('task')!r}); use a `sonofm sam` run")
    checkpoint = Path(meta["sam_checkpoint"])
    if not checkpoint.is_file():
        raise SonofmError(f"base SAM checkpoint {checkpoint} (named in {model_file}) not found")
    adapter = meta.get("adapter", meta.get("encoder_tuning"))  # files from sonofm 0.1 name it encoder_tuning
    model = build_adapted_sam(checkpoint, meta["sam_type"], meta["img_size"], meta["classes"], adapter,
                              meta.get("lora_rank", 4))
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
