"""Fixtures for the model tests: tiny models and random-weight checkpoints in the official USFM layout."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import Tensor

from sonofm.models import UsfmViT, create_backbone

USFM_KEYS_FILE = Path(__file__).parents[1] / "fixtures" / "usfm_latest_keys.json"
SHARED_TABLE_KEY = "rel_pos_bias.relative_position_bias_table"
TINY_VIT = {"depth": 2, "embed_dim": 64, "num_heads": 4}


def random_state_dict(shapes: dict[str, list[int]], seed: int = 0, scale: float = 0.1) -> dict[str, Tensor]:
    """Random tensors with the given names and shapes (normal, std ``scale``; block norm weights centred on 1)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        value = torch.randn(shape, generator=generator) * scale
        state[key] = value + 1.0 if key.endswith(("norm1.weight", "norm2.weight")) else value
    return state


def to_official_layout(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our per-block UsfmViT state dict -> the USFM_latest.pth layout, whose blocks share block 0's table."""
    official = {key: value for key, value in state.items() if not key.endswith("attn.relative_position_bias_table")}
    official[SHARED_TABLE_KEY] = state["blocks.0.attn.relative_position_bias_table"]
    return official


def build_tiny_usfm(img_size: int = 64, seed: int = 0) -> UsfmViT:
    """A depth-2, 64-dim, 4-head UsfmViT with every parameter random (tables and gammas too), in eval mode."""
    model = create_backbone("usfm_vit_base_patch16", img_size=img_size, **TINY_VIT).eval()
    shapes = {key: list(value.shape) for key, value in model.state_dict().items()}
    model.load_state_dict(random_state_dict(shapes, seed=seed, scale=0.3))
    return model


@pytest.fixture
def tiny_vit() -> dict[str, int]:
    """Keyword overrides that shrink any registered ViT to depth 2, 64 dims, 4 heads."""
    return dict(TINY_VIT)


@pytest.fixture
def tiny_usfm() -> Callable[..., UsfmViT]:
    """``tiny_usfm(img_size=64, seed=0)``: a tiny random UsfmViT (grid 4x4 at 64 px)."""
    return build_tiny_usfm


@pytest.fixture
def official_layout() -> Callable[[dict[str, Tensor]], dict[str, Tensor]]:
    """``official_layout(state)``: a UsfmViT state dict rewritten in the USFM_latest.pth layout."""
    return to_official_layout


@pytest.fixture(scope="session")
def usfm_latest_shapes() -> dict[str, list[int]]:
    """Key -> shape of the official USFM_latest.pth (ViT-B/16 at 224 px)."""
    return json.loads(USFM_KEYS_FILE.read_text())["keys"]


@pytest.fixture(scope="session")
def official_checkpoint(tmp_path_factory, usfm_latest_shapes) -> tuple[Path, dict[str, Tensor]]:
    """A random-weight ``USFM_latest.pth`` look-alike saved with torch.save, and its tensors."""
    state = random_state_dict(usfm_latest_shapes)
    path = tmp_path_factory.mktemp("usfm") / "USFM_latest.pth"
    torch.save(state, path)
    return path, state
