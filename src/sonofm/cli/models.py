"""``sonofm models``: list the registered backbones, then explain timm passthrough backbones (``timm/<name>``)."""

from __future__ import annotations

import argparse
import textwrap

WIDTH = 100
TIMM_EXAMPLES = ("timm/convnext_tiny", "timm/vit_small_patch14_dinov2", "timm/resnet50", "timm/efficientnet_b0")


def register(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="list the available backbones")
    models.set_defaults(handler=run_models)


def run_models(args: argparse.Namespace) -> int:
    from sonofm.models import list_backbones

    for name in list_backbones():
        print(name)
    print()
    print(timm_paragraph())
    return 0


def timm_paragraph() -> str:
    """What ``--model timm/<name>`` does, with example names, wrapped for a terminal."""
    import timm

    text = (
        f"Any timm model is a backbone too: --model timm/<name>, e.g. {', '.join(TIMM_EXAMPLES)} (timm "
        f"{timm.__version__} has {len(timm.list_models())} architectures; list them with python -c \"import timm; "
        "print(timm.list_models('*convnext*'))\"). It is built with random weights and nothing is downloaded: give "
        "pretrained ones as a local file with --weights (timm or Hugging Face safetensors, or a torch state dict of "
        "that model; its classifier is ignored). Classification (full, partial, linear), embeddings and predict work "
        "with every model; segmentation with models whose feature levels reach strides 4 to 32 (CNNs, Swin) or share "
        "one stride (plain ViTs, through the ViT neck). Layer decay follows timm's group_matcher."
    )
    return textwrap.fill(text, WIDTH, break_on_hyphens=False, break_long_words=False)
