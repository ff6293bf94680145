"""Fixtures shared by the SAM part tests."""

import pytest
import torch

from sonofm.sam import build_sam, save_sam_checkpoint


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A random-init ``vit_tiny`` SAM saved in the official checkpoints' format (seed 0)."""
    torch.manual_seed(0)
    return save_sam_checkpoint(build_sam("vit_tiny"), tmp_path_factory.mktemp("sam") / "tiny.pth")
