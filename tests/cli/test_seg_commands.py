"""`sonofm finetune seg`, `evaluate`, `predict` on segmentation runs through the CLI, and their one-line errors."""

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from sonofm.cli.main import main

FAST = ["--model", "usfm_vit_tiny_patch16", "--set", "model_args={depth: 4}", "--img-size", "64", "--epochs", "1",
        "--batch-size", "16", "--num-workers", "0", "--no-progress", "--set", "head_args={channels: 32}"]


@pytest.fixture(scope="module")
def phantom(phantom_set):
    return phantom_set(n_per_class=8, size=64, seed=3, frames_per_group=1)


@pytest.fixture(scope="module")
def finished_run(phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "seg"
    assert main(["finetune", "seg", "--data", str(phantom / "seg"), "--out", str(out), *FAST]) == 0
    return out


def copy_dataset(phantom, tmp_path):
    data = tmp_path / "seg"
    shutil.copytree(phantom / "seg", data)
    return data


def test_finetune_seg_writes_the_run_folder(finished_run):
    config = (finished_run / "config.yaml").read_text()
    assert "head: upernet" in config and "channels: 32" in config and "img_size: 64" in config
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert {"test/dice", "test/iou", "test/hd95", "test/pixel_accuracy", "val/dice", "test/dice/class_1"} <= metrics.keys()
    for name in ("split.csv", "log.csv", "model.safetensors", "checkpoints/last.ckpt", "per_image_test.csv",
                 "examples_val.png", "training_curves.png"):
        assert (finished_run / name).is_file(), name


def test_evaluate_seg_run_reproduces_test_metrics(finished_run, capsys):
    assert main(["evaluate", "--run", str(finished_run), "--no-progress"]) == 0
    evaluated = json.loads((finished_run / "evaluate_test.json").read_text())
    trained = json.loads((finished_run / "metrics.json").read_text())
    assert evaluated["test/dice"] == pytest.approx(trained["test/dice"], abs=1e-6)
    assert "test/hd95" in capsys.readouterr().out


def test_predict_writes_masks_at_each_images_own_size(finished_run, phantom, tmp_path):
    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    source = sorted((phantom / "seg" / "images").glob("*.png"))[0]
    shutil.copy(source, inputs / "a.png")
    Image.open(source).convert("L").resize((90, 50)).save(inputs / "sub" / "wide.png")
    assert main(["predict", "--run", str(finished_run), "--input", str(inputs), "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    with (tmp_path / "out" / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["path"] for row in rows] == [str(inputs / "a.png"), str(inputs / "sub" / "wide.png")]
    wide = Image.open(tmp_path / "out" / "masks" / "sub" / "wide.png")
    assert wide.size == (90, 50) and wide.mode == "L"
    assert set(np.unique(np.asarray(wide)).tolist()) <= {0, 1, 2}
    overlay = Image.open(tmp_path / "out" / "overlays" / "sub" / "wide.png")
    assert overlay.size == (90, 50) and overlay.mode == "RGB"
    for row in rows:
        total = sum(float(row[key]) for key in row if key.startswith("fraction_"))
        assert total == pytest.approx(1.0, abs=1e-5)


def test_mask_of_wrong_size_is_named(phantom, tmp_path, cli_error):
    data = copy_dataset(phantom, tmp_path)
    mask = sorted((data / "masks").glob("*.png"))[2]
    Image.open(mask).resize((40, 40), Image.NEAREST).save(mask)
    message = cli_error(["finetune", "seg", "--data", str(data), "--out", str(tmp_path / "run"), *FAST])
    assert mask.name in message and "size" in message
    assert not (tmp_path / "run").exists()


def test_bad_head_option_leaves_no_run_folder(phantom, tmp_path, cli_error):
    message = cli_error(["finetune", "seg", "--data", str(phantom / "seg"), "--out", str(tmp_path / "run"), *FAST,
                         "--set", "model_args={depth: 2}"])  # UperNet taps 4 blocks of the ViT
    assert message == "sonofm: error: a 2-block backbone has too few blocks for 4 feature maps\n"
    assert not (tmp_path / "run").exists()


def test_out_of_range_class_ids_are_named(phantom, tmp_path, cli_error):
    data = copy_dataset(phantom, tmp_path)
    mask = sorted((data / "masks").glob("*.png"))[1]
    ids = np.asarray(Image.open(mask)).copy()
    ids[:4, :4] = 7
    Image.fromarray(ids).save(mask)
    message = cli_error(["finetune", "seg", "--data", str(data), "--num-classes", "3",
                                "--out", str(tmp_path / "run"), *FAST])
    assert mask.name in message and "7" in message


def test_rgb_mask_is_named(phantom, tmp_path, cli_error):
    data = copy_dataset(phantom, tmp_path)
    mask = sorted((data / "masks").glob("*.png"))[0]
    ids = np.asarray(Image.open(mask))
    rgb = np.stack([ids, np.zeros_like(ids), ids * 3], axis=-1).astype(np.uint8)
    Image.fromarray(rgb, mode="RGB").save(mask)
    message = cli_error(["finetune", "seg", "--data", str(data), "--out", str(tmp_path / "run"), *FAST])
    assert mask.name in message and "RGB" in message


def test_unet_head_on_a_vit_is_refused(phantom, tmp_path, cli_error):
    message = cli_error(["finetune", "seg", "--data", str(phantom / "seg"), "--head", "unet",
                                "--out", str(tmp_path / "run"), *FAST])
    assert "unet" in message and "ResNet" in message


def test_unknown_head_option_is_named(phantom, tmp_path, cli_error):
    message = cli_error(["finetune", "seg", "--data", str(phantom / "seg"), "--out", str(tmp_path / "run"),
                                *FAST, "--set", "head_args={channels: 32, colour: red}"])
    assert "colour" in message


def test_missing_pixel_size_column_is_named(phantom, tmp_path, cli_error):
    message = cli_error(["finetune", "seg", "--data", str(phantom / "seg"), "--out", str(tmp_path / "run"),
                                *FAST, "--set", "pixel_size_column=spacing"])
    assert "spacing" in message and "labels.csv" in message


def test_classification_data_is_refused_for_segmentation(phantom, tmp_path, cli_error):
    message = cli_error(["finetune", "seg", "--data", str(phantom / "cls"), "--out", str(tmp_path / "run"),
                                *FAST])
    assert "classification" in message
