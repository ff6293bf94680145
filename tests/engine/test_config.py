"""The run configs: image sizes checked against the model's real patch size, one pretrained-or-scratch decision, and
the saved keys and defaults that resumed runs compare."""

import pytest
import yaml
from torch import nn

from sonofm.engine.config import FinetuneConfig
from sonofm.errors import SonofmError
from sonofm.methods.mim.model import MimConfig
from sonofm.models import create_backbone, patch_size_of, registry
from sonofm.runs.config import config_to_dict
from sonofm.runs.run_folder import prepare_run
from sonofm.tasks.aclus.pretrain import AclusPretrainConfig
from sonofm.tasks.cls.finetune import ClsFinetuneConfig
from sonofm.tasks.enhance.finetune import EnhanceFinetuneConfig
from sonofm.tasks.mim.pretrain import MimPretrainConfig
from sonofm.tasks.sam.train import PrompterConfig, SamFinetuneConfig
from sonofm.tasks.seg.finetune import SegFinetuneConfig
from sonofm.workflows.kfold import KfoldConfig
from sonofm.workflows.label_efficiency import LabelEfficiencyConfig

PATCH8 = "test_vit_patch8"
HARDWARE = {"precision": "auto", "num_workers": None, "accelerator": "auto", "devices": "1", "strategy": "auto",
            "num_nodes": 1, "sync_batchnorm": True, "progress": True}
TRAINING_KEYS = {*HARDWARE, "data", "img_size", "epochs", "batch_size", "accumulate", "train_fraction", "seed",
                 "split_seed", "group_by", "split_ratios", "split_file", "optim"}
FINETUNE_KEYS = {*TRAINING_KEYS, "model", "model_args", "weights", "drop_path"}
PRETRAINING_KEYS = {*HARDWARE, "data", "model", "img_size", "epochs", "max_steps", "batch_size", "accumulate", "seed",
                    "checkpoint_every"}
# class -> (keys its config.yaml must hold, saved (img_size, epochs, batch_size, accumulate, seed)), as before the
# schedule fields moved into one base class
SAVED = {
    ClsFinetuneConfig: (FINETUNE_KEYS, (224, 30, 32, 1, 0)),
    SegFinetuneConfig: (FINETUNE_KEYS, (224, 30, 8, 1, 0)),
    EnhanceFinetuneConfig: (FINETUNE_KEYS, (224, 30, 8, 1, 0)),
    KfoldConfig: (FINETUNE_KEYS, (224, 30, 32, 1, 0)),
    SamFinetuneConfig: (TRAINING_KEYS, (256, 20, 8, 1, 0)),
    PrompterConfig: (TRAINING_KEYS, (256, 30, 8, 1, 0)),
    MimPretrainConfig: (PRETRAINING_KEYS, (224, 100, 64, 1, 0)),
    AclusPretrainConfig: (PRETRAINING_KEYS, (224, 300, 64, 1, 0)),
}
SCHEDULE = ("img_size", "epochs", "batch_size", "accumulate", "seed")


@pytest.fixture
def patch8_backbone(monkeypatch):
    """A backbone name registered with 8 px patches for the test only."""
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))
    monkeypatch.setattr(registry, "_PATCH_SIZES", dict(registry._PATCH_SIZES))
    registry.register_backbone(PATCH8, patch_size=8)(lambda img_size=224: nn.Identity())
    return PATCH8


def test_a_patch_8_model_takes_multiples_of_8_only(patch8_backbone):
    assert patch_size_of(patch8_backbone) == 8
    FinetuneConfig(data="x", model=patch8_backbone, img_size=40).validate()
    with pytest.raises(SonofmError, match=r"^--img-size must be a multiple of 8, the patch size of test_vit_patch8, "
                                          r"got 36$"):
        FinetuneConfig(data="x", model=patch8_backbone, img_size=36).validate()
    with pytest.raises(SonofmError, match="^--img-size must be a multiple of 8"):
        create_backbone(patch8_backbone, img_size=36)
    assert isinstance(create_backbone(patch8_backbone, img_size=40), nn.Identity)


@pytest.mark.parametrize(("model", "patch", "refused"), [("usfm_vit_tiny_patch16", 16, 40), ("resnet18", 32, 48)])
def test_img_size_follows_the_registered_patch_of_each_model(model, patch, refused):
    assert patch_size_of(model) == patch
    ClsFinetuneConfig(data="x", model=model, img_size=2 * patch).validate()
    with pytest.raises(SonofmError, match=f"^--img-size must be a multiple of {patch}, the patch size of {model}, "
                                          f"got {refused}$"):
        ClsFinetuneConfig(data="x", model=model, img_size=refused).validate()


def test_mim_masking_is_checked_with_the_encoders_real_patch(patch8_backbone):
    mim = MimConfig(mask_patch=24)
    MimPretrainConfig(data=["x"], model=patch8_backbone, img_size=48, mim=mim).validate()  # 24 = 3 patches of 8
    with pytest.raises(SonofmError, match="^mask_patch must be a positive multiple of the encoder's patch size 16, "
                                          "got 24$"):
        MimPretrainConfig(data=["x"], model="usfm_vit_tiny_patch16", img_size=48, mim=mim).validate()
    with pytest.raises(SonofmError, match="^--img-size 40 is not a multiple of mask_patch 24$"):
        MimPretrainConfig(data=["x"], model=patch8_backbone, img_size=40, mim=mim).validate()


def test_unknown_model_is_refused_by_validation():
    with pytest.raises(SonofmError, match="^unknown backbone 'vit_huge'; available: resnet18, resnet50, "):
        ClsFinetuneConfig(data="x", model="vit_huge").validate()


def test_label_efficiency_checks_its_runs_before_starting():
    config = LabelEfficiencyConfig(data="x", weights="w.safetensors", model="usfm_vit_tiny_patch16", img_size=72)
    with pytest.raises(SonofmError, match="^--img-size must be a multiple of 16, the patch size of usfm_vit_tiny"):
        config.validate()
    config.img_size = 80
    config.validate()
    config.cls.epochs = 0
    with pytest.raises(SonofmError, match="^--epochs must be >= 1, got 0$"):
        config.validate()


@pytest.mark.parametrize(("weights", "layer_decay", "head_scale"), [("w.safetensors", 0.65, 0.001), (None, 1.0, 1.0)])
def test_pretrained_decides_layer_decay_and_head_scale(weights, layer_decay, head_scale):
    config = ClsFinetuneConfig(data="x", weights=weights)
    assert config.pretrained is (weights is not None)
    assert config.resolved_optim().layer_decay == layer_decay
    assert config.head_init_scale == head_scale
    config.optim.layer_decay = 0.8
    assert config.resolved_optim().layer_decay == 0.8  # an explicit value wins either way


@pytest.mark.parametrize("cls", list(SAVED), ids=lambda cls: cls.__name__)
def test_saved_keys_and_schedule_defaults_are_unchanged(cls):
    keys, schedule = SAVED[cls]
    saved = config_to_dict(cls())
    assert keys <= saved.keys()
    assert {key: saved[key] for key in HARDWARE} == HARDWARE
    assert tuple(saved[key] for key in SCHEDULE) == schedule
    assert all(type(saved[key]) is int for key in SCHEDULE)


def test_label_efficiency_sections_keep_their_schedule_defaults():
    saved = config_to_dict(LabelEfficiencyConfig())
    assert {name: tuple(saved[name][key] for key in SCHEDULE) for name in ("pretrain", "cls", "seg")} == {
        "pretrain": (224, 20, 64, 1, 0), "cls": (224, 20, 32, 1, 0), "seg": (224, 20, 16, 1, 0)}


def test_a_run_saved_with_keys_in_another_order_resumes(tmp_path):
    config = ClsFinetuneConfig(data="x", model="resnet18", img_size=64)
    saved = config_to_dict(config)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(dict(reversed(saved.items())), sort_keys=False))
    _, resuming = prepare_run(tmp_path / "run", config)
    assert resuming


def failures(config) -> str:
    """Every message of a failed check of ``config``, one per line."""
    return "\n".join(message for ok, message in config.checks() if not ok)


@pytest.mark.parametrize("cls", [ClsFinetuneConfig, SegFinetuneConfig, EnhanceFinetuneConfig, AclusPretrainConfig,
                                 SamFinetuneConfig], ids=lambda cls: cls.__name__)
def test_fsdp_is_refused_where_the_command_does_not_shard(cls):
    assert "--strategy fsdp: only `pretrain mim` shards its model" in failures(cls(strategy="fsdp"))
    assert "only `pretrain mim`" not in failures(MimPretrainConfig(strategy="fsdp"))


def test_fsdp_needs_cuda_and_sync_batchnorm_is_on_by_default():
    config = MimPretrainConfig(strategy="fsdp", accelerator="cpu")
    assert "--strategy fsdp shards the model over CUDA GPUs and none is usable" in failures(config)
    assert MimPretrainConfig().sync_batchnorm and not MimPretrainConfig(sync_batchnorm=False).sync_batchnorm
