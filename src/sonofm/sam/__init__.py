"""A-SAM: Segment Anything adapted to ultrasound (LoRA + mask decoder), a class-conditional automatic prompter.

Built on the official ``segment-anything`` package: :func:`load_sam` returns its ``Sam`` (``image_encoder``,
``prompt_encoder``, ``mask_decoder``) from a local checkpoint at any input size.
"""

from sonofm.sam.adapted import AdaptedSam, build_adapted_sam, load_adapted_sam
from sonofm.sam.checkpoint import load_sam, save_sam_checkpoint
from sonofm.sam.registry import SAM_TYPES, build_sam

__all__ = ["SAM_TYPES", "AdaptedSam", "build_adapted_sam", "build_sam", "load_adapted_sam", "load_sam",
           "save_sam_checkpoint"]
