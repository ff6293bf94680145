"""End-to-end enhancement fine-tuning on phantom images: learning, the run folder contract, evaluate, predict,
exact resume."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from sonofm.data.degradations import DegradationConfig
from sonofm.runs.model_file import read_model_metadata
from sonofm.tasks.enhance.restore_files import predict_restored
from sonofm.inference.evaluate import evaluate_run
from sonofm.tasks.enhance.finetune import EnhanceFinetuneConfig, finetune_enhancer, load_images_index
from sonofm.runs.run_model import load_run_model

METRICS = ("psnr", "ssim", "psnr_fan", "ssim_fan")


def quiet(_message: str) -> None:
    pass


def config_for(data, **changes) -> EnhanceFinetuneConfig:
    """The tiny phantom run. One warmup epoch keeps the whole-image PSNR gain above 2 dB over seeds 0-3 in fp32 and
    bf16; starting at full LR set training back (0.4-0.5 dB after 8 epochs, as the loss only sees the fan)."""
    config = EnhanceFinetuneConfig(
        data=str(data), model="usfm_vit_tiny_patch16", model_args={"depth": 4}, img_size=64, epochs=8, batch_size=4,
        num_workers=0, progress=False, degradation=DegradationConfig("speckle"), split_ratios=(0.6, 0.2, 0.2),
    )
    config.optim.lr, config.optim.warmup_epochs = 4e-3, 1
    for key, value in changes.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="module")
def phantom(phantom_set):
    return phantom_set(n_per_class=8, size=64, seed=1, frames_per_group=2) / "seg"


@pytest.fixture(scope="module")
def phantom_run(phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "enhance"
    metrics = finetune_enhancer(config_for(phantom), out, echo=quiet)
    return out, metrics


def test_restored_images_beat_the_degraded_input(phantom_run):
    out, metrics = phantom_run
    assert metrics == json.loads((out / "metrics.json").read_text())
    for split in ("val", "test"):
        for key in METRICS:
            assert f"{split}/{key}" in metrics and f"{split}/{key}_degraded" in metrics
    assert metrics["test/psnr"] > metrics["test/psnr_degraded"] + 0.5
    assert metrics["test/psnr_fan"] > metrics["test/psnr_fan_degraded"] + 0.5
    assert metrics["test/psnr_fan"] < metrics["test/psnr"]  # the black border is easy to restore


def test_run_folder_holds_the_contract_files_and_a_grouped_split(phantom_run):
    out, _ = phantom_run
    for name in ("config.yaml", "log.csv", "split.csv", "model.safetensors", "examples_test.png",
                 "training_curves.png", "per_image_test.csv", "per_image_val.csv", "checkpoints/last.ckpt"):
        assert (out / name).is_file(), name
    metadata = read_model_metadata(out / "model.safetensors")
    assert metadata["task"] == "enhance" and metadata["degradation"]["kind"] == "speckle"
    rows = list(csv.DictReader((out / "split.csv").open()))
    split_of_group: dict[str, set[str]] = {}
    for row in rows:
        split_of_group.setdefault(row["group"], set()).add(row["split"])
    assert all(len(splits) == 1 for splits in split_of_group.values())
    assert "val/psnr" in (out / "log.csv").read_text().splitlines()[0]


def test_evaluate_reproduces_the_run_metrics(phantom_run):
    out, metrics = phantom_run
    values, path = evaluate_run(out, progress=False)
    assert path.name == "evaluate_test.json"
    for key, value in values.items():
        assert value == pytest.approx(metrics[key], rel=1e-5), key


def test_predict_restored_writes_each_image_at_its_own_size(phantom_run, tmp_path):
    out, _ = phantom_run
    loaded = load_run_model(out)
    assert loaded.task == "enhance"
    sizes = [(50, 70), (64, 64)]
    paths = []
    for i, (height, width) in enumerate(sizes):
        paths.append(tmp_path / "in" / f"scan{i}.jpg")
        paths[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (height, width), dtype=np.uint8)).save(paths[-1])
    csv_path = predict_restored(loaded.model, paths, tmp_path / "out", loaded.img_size, batch_size=2, progress=False)
    rows = list(csv.DictReader(csv_path.open()))
    assert [row["path"] for row in rows] == [str(p) for p in paths]
    for row, (height, width) in zip(rows, sizes):
        restored = np.asarray(Image.open(row["restored"]))
        assert restored.shape == (height, width, 3)
    assert (tmp_path / "out/restored/scan0.png").is_file()


def test_a_plain_image_folder_is_read_without_labels(phantom, tmp_path):
    for i, source in enumerate(sorted((phantom / "images").glob("*.png"))[:3]):
        (tmp_path / ("sub" if i else "")).mkdir(exist_ok=True)
        (tmp_path / ("sub" if i else "") / f"x{i}.png").write_bytes(source.read_bytes())
    index = load_images_index(config_for(tmp_path))
    assert len(index.samples) == 3


def test_interrupted_run_resumes_exactly(phantom, tmp_path, crash_at_epoch, assert_same_weights):
    config = config_for(phantom, img_size=32, epochs=2, train_fraction=0.5,
                        model_args={"depth": 2}, degradation=DegradationConfig("mixed"))
    finetune_enhancer(config, tmp_path / "straight", echo=quiet)
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune_enhancer(config, tmp_path / "resumed", echo=quiet, callbacks=[crash_at_epoch(1)])
    finetune_enhancer(config, tmp_path / "resumed", echo=quiet)
    assert_same_weights(tmp_path / "straight", tmp_path / "resumed")
    assert json.loads((tmp_path / "resumed/metrics.json").read_text()) == pytest.approx(
        json.loads((tmp_path / "straight/metrics.json").read_text()))
