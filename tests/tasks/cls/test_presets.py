"""``--preset uscl`` is USCL's protocol: every row of the README's table holds for the preset and the defaults; the
last-block mode trains only a ResNet's last residual block, and the linear head has no norm."""

import re
from pathlib import Path

import pytest
import torch

from sonofm.cli.finetune import CLS_FLAGS, cls_config_from_args
from sonofm.cli.main import build_parser
from sonofm.data.transforms import USCL_CROP_RATIO, USCL_CROP_SCALE, ClassificationTransform, random_crop_box
from sonofm.models import create_backbone
from sonofm.models.classifier import ImageClassifier
from sonofm.tasks.cls.finetune import ClsFinetuneConfig
from sonofm.tasks.cls.freezing import freeze_backbone

README = Path(__file__).parents[3] / "README.md"


def readme_table() -> list[tuple[str, str, str]]:
    """``(config key, sonofm's default, preset value)`` rows of the README's USCL table."""
    text = README.read_text(encoding="utf-8")
    table = text[text.index("| setting | USCL's value | sonofm's default | `--preset uscl` |"):].split("\n\n")[0]
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:]]
    return [(re.sub(r"`", "", key).strip(), default.strip(), preset.strip()) for key, _, default, preset in rows]


def value_of(config: ClsFinetuneConfig, key: str):
    for part in key.split("."):
        config = getattr(config, part)
    return config


def as_config_value(text: str):
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parsed(*extra: str) -> ClsFinetuneConfig:
    args = build_parser().parse_args(["finetune", "cls", "--data", "d", "--out", "o", *extra])
    return cls_config_from_args(ClsFinetuneConfig(), args, CLS_FLAGS)


def test_the_preset_and_the_defaults_equal_the_readme_table():
    rows = readme_table()
    assert len(rows) == 16
    preset, default = parsed("--preset", "uscl"), parsed()
    for key, default_text, preset_text in rows:
        assert value_of(preset, key) == as_config_value(preset_text), key
        if key == "optim.layer_decay":
            assert default.optim.layer_decay is None and default_text == "0.65 with `--weights`"
        else:
            assert value_of(default, key) == as_config_value(default_text), key


def test_last_block_mode_trains_only_the_last_residual_block():
    backbone = create_backbone("resnet18", img_size=64)
    freeze_backbone(backbone, "last_block")
    trained = {name.split(".")[0] + "." + name.split(".")[1] for name, p in backbone.named_parameters()
               if p.requires_grad}
    assert trained == {"layer4.1"}
    vit = create_backbone("usfm_vit_tiny_patch16", img_size=32, depth=3)
    freeze_backbone(vit, "last_block")
    assert {name.split(".")[1] for name, p in vit.named_parameters() if p.requires_grad} == {"2"}


def test_the_linear_head_has_no_norm_and_the_uscl_crop_keeps_80_to_100_percent():
    model = ImageClassifier(create_backbone("resnet18", img_size=64), num_classes=3, head="linear")
    assert isinstance(model.fc_norm, torch.nn.Identity)
    assert [name for name, _ in model.named_parameters() if not name.startswith("backbone.")] == ["head.weight",
                                                                                                 "head.bias"]
    for seed in range(50):
        top, left, height, width = random_crop_box(224, 224, torch.Generator().manual_seed(seed), USCL_CROP_SCALE,
                                                   USCL_CROP_RATIO)
        assert 0.79 <= height * width / 224**2 <= 1.0 and 0.79 <= width / height <= 1.26
        assert top + height <= 224 and left + width <= 224
    image = torch.randint(0, 256, (64, 80, 3), dtype=torch.uint8).numpy()
    assert ClassificationTransform(32, train=True, augment="uscl")(image, torch.Generator()).shape == (3, 32, 32)
    with pytest.raises(ValueError, match="augment must be one of sonofm, uscl"):
        ClassificationTransform(32, train=True, augment="other")
