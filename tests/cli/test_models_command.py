"""`sonofm models`: the backbone registry, one name per line (the README's names among them), then a paragraph on
timm passthrough backbones; stray arguments exit 2."""

import pytest

from sonofm.cli.main import main
from sonofm.models import list_backbones

DOCUMENTED = {"usfm_vit_base_patch16", "usfm_vit_small_patch16", "usfm_vit_tiny_patch16", "timm_vit_tiny_patch16",
              "timm_vit_small_patch16", "timm_vit_base_patch16", "resnet18", "resnet50"}


def test_models_lists_every_registered_backbone_once(capsys):
    assert main(["models"]) == 0
    listed, _, paragraph = capsys.readouterr().out.partition("\n\n")
    listed = listed.splitlines()
    assert listed == sorted(set(listed)) == list_backbones()
    assert DOCUMENTED <= set(listed)
    assert "--model timm/<name>" in paragraph and "timm/convnext_tiny" in paragraph and "--weights" in paragraph


def test_models_refuses_stray_arguments(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "--all"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --all" in capsys.readouterr().err
