"""MIM pretraining end to end on phantom images: loss falls, run folder and exports, resume, 2-process CPU DDP."""

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import lightning as L
import fsspec
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from sonofm.data.pack_writer import pack_images
from sonofm.data.phantom import write_phantom_dataset
from sonofm.errors import SonofmError
from sonofm.models import create_backbone, load_backbone_weights
from sonofm.tasks.cls.finetune import ClsFinetuneConfig, finetune_classifier
from sonofm.tasks.mim.pretrain import OFFICIAL_EXPORT, MimPretrainConfig, pretrain_mim


def quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def phantom_images(tmp_path_factory):
    root = write_phantom_dataset(tmp_path_factory.mktemp("phantom"), n_per_class=12, size=64, seed=2)
    return [str(root / "seg" / "images"), str(root / "cls")]  # the same pictures twice: duplicates are skipped


def small_config(data, **changes) -> MimPretrainConfig:
    config = MimPretrainConfig(
        data=list(data), model="usfm_vit_tiny_patch16", model_args={"depth": 4}, img_size=64, epochs=6,
        batch_size=16, num_workers=0, progress=False, figure_every=5, checkpoint_every=0,
    )
    config.optim.lr = 1e-3
    config.mim.mask_patch = 32
    for key, value in changes.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="module")
def pretrain_run(phantom_images, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mim"
    return out, pretrain_mim(small_config(phantom_images), out, echo=quiet)


def epoch_losses(run: Path) -> list[float]:
    lines = (run / "log.csv").read_text().strip().splitlines()
    header = lines[0].split(",")
    column = header.index("train/loss_epoch")
    return [float(line.split(",")[column]) for line in lines[1:]]


def test_loss_falls_and_duplicates_are_skipped(pretrain_run):
    out, metrics = pretrain_run
    losses = epoch_losses(out)
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0], losses
    assert metrics["images"] == 48  # 48 phantom images found twice (cls and seg copies)
    assert len((out / "images.txt").read_text().splitlines()) == 48
    assert {"train/loss_spatial_epoch", "train/loss_frequency_epoch", "steps"} <= metrics.keys()


def test_run_folder_holds_figures_checkpoint_and_exports(pretrain_run):
    out, metrics = pretrain_run
    for name in ("config.yaml", "log.csv", "metrics.json", "model.safetensors", OFFICIAL_EXPORT,
                 "checkpoints/last.ckpt", "reconstructions/final.png", "reconstructions/step_000005.png"):
        assert (out / name).is_file(), name
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(metrics)


def test_exports_load_as_backbones_with_the_same_outputs(pretrain_run):
    out, _ = pretrain_run
    reference = create_backbone("usfm_vit_tiny_patch16", img_size=64, depth=4, shared_rel_pos_bias=True).eval()
    reference.load_state_dict({k: v for k, v in load_file(out / "model.safetensors").items()})
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference.forward_tokens(images)
    for path in (out / "model.safetensors", out / OFFICIAL_EXPORT):
        backbone = create_backbone("usfm_vit_tiny_patch16", img_size=64, depth=4).eval()  # per-block tables
        report = load_backbone_weights(backbone, path)
        assert not report.missing, report.summary()
        with torch.no_grad():
            torch.testing.assert_close(backbone.forward_tokens(images), expected, atol=1e-5, rtol=1e-5)
    official = torch.load(out / OFFICIAL_EXPORT, weights_only=True)
    assert "rel_pos_bias.relative_position_bias_table" in official and "mask_token" in official
    assert not any("relative_position_index" in key or key.startswith("decoder") for key in official)


class BackboneAtStart(L.Callback):
    """Keeps a copy of the fine-tuned model's backbone tensors as training starts, before any optimiser step."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.tensors = {key: value.clone() for key, value in pl_module.model.backbone.state_dict().items()}


def test_pretrained_weights_fine_tune(pretrain_run, tmp_path):
    """Fine-tuning starts from the exported backbone: every exported tensor, bit for bit; the shared relative
    position table in each block's own table."""
    out, _ = pretrain_run
    data = write_phantom_dataset(tmp_path / "ph", n_per_class=8, size=64, seed=5, frames_per_group=1) / "cls"
    config = ClsFinetuneConfig(data=str(data), model="usfm_vit_tiny_patch16", model_args={"depth": 4},
                               weights=str(out / "model.safetensors"), img_size=64, epochs=1, batch_size=16,
                               num_workers=0, progress=False)
    start = BackboneAtStart()
    finetune_classifier(config, tmp_path / "cls", echo=quiet, callbacks=[start])
    exported = load_file(out / "model.safetensors")
    shared = exported.pop("rel_pos_bias.relative_position_bias_table")
    tables = {key for key in start.tensors if key.endswith("attn.relative_position_bias_table")}
    assert len(tables) == 4 and start.tensors.keys() - tables == exported.keys()
    for key in tables:
        torch.testing.assert_close(start.tensors[key], shared, rtol=0, atol=0, msg=key)
    for key, value in exported.items():
        torch.testing.assert_close(start.tensors[key], value, rtol=0, atol=0, msg=key)


def test_resume_after_interruption_matches(phantom_images, tmp_path, crash_at_epoch):
    """With a loader worker (the default): its first keys are drawn before Lightning sets the resumed epoch."""
    config = small_config(phantom_images, epochs=3, figure_every=0, num_workers=1)
    pretrain_mim(config, tmp_path / "straight", echo=quiet)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain_mim(config, tmp_path / "resumed", echo=quiet, callbacks=[crash_at_epoch(2)])
    pretrain_mim(config, tmp_path / "resumed", echo=quiet)
    straight = load_file(tmp_path / "straight/model.safetensors")
    resumed = load_file(tmp_path / "resumed/model.safetensors")
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0, msg=key)


def test_max_steps_bounds_training(phantom_images, tmp_path):
    metrics = pretrain_mim(small_config(phantom_images, max_steps=4, figure_every=0), tmp_path / "run", echo=quiet)
    assert metrics["steps"] == 4


def test_empty_folder_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SonofmError, match="empty"):
        pretrain_mim(small_config([str(tmp_path / "empty")]), tmp_path / "run", echo=quiet)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_two_process_cpu_ddp(phantom_images, tmp_path):
    """The same command on 2 CPU processes (gloo): finishes, and the two ranks split each epoch's images."""
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "sonofm.cli.main", "pretrain", "mim", "--data", *phantom_images,
               "--model", "usfm_vit_tiny_patch16", "--set", "model_args={depth: 2}", "--img-size", "64",
               "--epochs", "2", "--batch-size", "8", "--num-workers", "0", "--accelerator", "cpu",
               "--devices", "2", "--strategy", "ddp", "--no-progress", "--out", str(out),
               "--set", "figure_every=0", "--set", "checkpoint_every=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    # 48 images over 2 ranks of batch 8: 3 optimiser steps per epoch, not 6
    assert metrics["steps"] == 6
    assert (out / OFFICIAL_EXPORT).is_file()


class EpochKeys(L.Callback):
    """The positions the training sampler deals out in each epoch."""

    def __init__(self) -> None:
        self.epochs: list[list[int]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epochs.append([position for position, _ in trainer.train_dataloader.sampler])


def test_balance_source_draws_each_data_folder_equally(tmp_path):
    rng = np.random.default_rng(0)
    for folder, count in (("liver", 12), ("thyroid", 3)):
        (tmp_path / folder).mkdir()
        for index in range(count):
            Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(tmp_path / folder / f"{index}.png")
    data = [str(tmp_path / "liver"), str(tmp_path / "thyroid")]
    keys, lines = EpochKeys(), []
    config = small_config(data, epochs=2, batch_size=5, figure_every=0, balance="source")
    pretrain_mim(config, tmp_path / "run", echo=lines.append, callbacks=[keys])
    assert any(line.startswith("balanced over 2 sources") for line in lines), lines
    files = (tmp_path / "run" / "images.txt").read_text().split()
    for epoch in keys.epochs:
        counts = Counter(Path(files[position]).parent.name for position in epoch)
        assert sorted(counts.values()) == [7, 8], counts  # 15 draws per epoch, not 12 liver and 3 thyroid
    (tmp_path / "weights.csv").write_text("source,weight\nliver,1\nthyroid,2\n")
    keys.epochs.clear()
    config.balance = str(tmp_path / "weights.csv")
    pretrain_mim(config, tmp_path / "weighted", echo=lines.append, callbacks=[keys])
    for epoch in keys.epochs:
        counts = Counter(Path(files[position]).parent.name for position in epoch)
        assert (counts["liver"], counts["thyroid"]) == (5, 10), counts  # 15 draws shared 1:2
    config.balance = "organ"
    with pytest.raises(SonofmError, match="--balance must be source or a .csv weights file, got .organ."):
        pretrain_mim(config, tmp_path / "other", echo=quiet)


def test_a_packed_folder_trains_exactly_as_its_image_folders(tmp_path):
    """Packed without resizing, the same images in the same order give bit-identical weights."""
    rng = np.random.default_rng(1)
    folders = [tmp_path / "a", tmp_path / "b"]
    for folder, count in zip(folders, (6, 4)):
        folder.mkdir()
        for index in range(count):
            Image.fromarray(rng.integers(0, 256, (48, 56), dtype=np.uint8)).save(folder / f"{index}.png")
    pack_images(folders, tmp_path / "packed", shard_size=4, progress=False)
    config = small_config([str(folder) for folder in folders], epochs=2, batch_size=4, figure_every=0,
                          balance="source")
    pretrain_mim(config, tmp_path / "from_folders", echo=quiet)
    folders_weights = load_file(tmp_path / "from_folders" / "model.safetensors")
    store = fsspec.filesystem("memory")  # an object store: the pack read by ranged requests through fsspec
    store.put(str(tmp_path / "packed"), f"/{tmp_path.name}/packed", recursive=True)
    for name, packed in (("from_pack", str(tmp_path / "packed")), ("from_store", f"memory://{tmp_path.name}/packed")):
        config.data = [packed]
        pretrain_mim(config, tmp_path / name, echo=quiet)
        pack_weights = load_file(tmp_path / name / "model.safetensors")
        for key in folders_weights:
            torch.testing.assert_close(pack_weights[key], folders_weights[key], rtol=0, atol=0, msg=key)
    config.data = [str(tmp_path / "packed"), str(folders[0])]
    with pytest.raises(SonofmError, match="--data takes one packed folder"):
        pretrain_mim(config, tmp_path / "mixed", echo=quiet)
