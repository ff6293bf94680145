"""`sonofm finetune cls`, `evaluate`, `predict` through the CLI: outputs, and one-line errors with exit code 2."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from sonofm.cli.finetune import CLS_FLAGS, cls_config_from_args
from sonofm.cli.main import build_parser, main
from sonofm.tasks.cls.finetune import ClsFinetuneConfig

FAST = ["--model", "usfm_vit_tiny_patch16", "--set", "model_args={depth: 2}", "--img-size", "64", "--epochs", "1",
        "--batch-size", "16", "--num-workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def phantom(phantom_set):
    return phantom_set(n_per_class=8, size=64, seed=3)


@pytest.fixture(scope="module")
def finished_run(phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cls"
    assert main(["finetune", "cls", "--data", str(phantom / "cls"), "--out", str(out), *FAST]) == 0
    return out


def test_finetune_writes_run_folder_with_config(finished_run):
    config = (finished_run / "config.yaml").read_text()
    assert "model: usfm_vit_tiny_patch16" in config and "depth: 2" in config and "img_size: 64" in config
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert {"test/accuracy", "test/balanced_accuracy", "test/macro_f1", "test/auroc"} <= metrics.keys()


def test_evaluate_reproduces_test_metrics(finished_run, capsys):
    assert main(["evaluate", "--run", str(finished_run), "--no-progress"]) == 0
    evaluated = json.loads((finished_run / "evaluate_test.json").read_text())
    trained = json.loads((finished_run / "metrics.json").read_text())
    assert evaluated["test/accuracy"] == pytest.approx(trained["test/accuracy"], abs=0.02)
    assert "test/balanced_accuracy" in capsys.readouterr().out


def test_predict_writes_probabilities(finished_run, phantom, tmp_path):
    assert main(["predict", "--run", str(finished_run), "--input", str(phantom / "cls" / "cyst"),
                 "--out", str(tmp_path), "--no-progress"]) == 0
    with (tmp_path / "predictions.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8
    classes = ["cyst", "irregular", "none", "solid_round"]
    for row in rows:
        probs = [float(row[f"prob_{name}"]) for name in classes]
        assert sum(probs) == pytest.approx(1.0, abs=1e-4)
        assert row["prediction"] == classes[int(np.argmax(probs))]


def test_rerun_of_finished_run_is_refused(finished_run, phantom, cli_error):
    message = cli_error(["finetune", "cls", "--data", str(phantom / "cls"), "--out", str(finished_run), *FAST])
    assert "is finished; pass --overwrite" in message


def test_unknown_config_key(phantom, tmp_path, cli_error):
    message = cli_error(["finetune", "cls", "--data", str(phantom / "cls"), "--out", str(tmp_path / "r"),
                                *FAST, "--set", "optim.lrr=3"])
    assert "unknown config key 'optim.lrr'" in message and not (tmp_path / "r").exists()


def test_unknown_model(phantom, tmp_path, cli_error):
    message = cli_error(["finetune", "cls", "--data", str(phantom / "cls"), "--out", str(tmp_path / "r"),
                                "--model", "vit_huge_nonexistent", "--epochs", "1", "--no-progress"])
    assert "vit_huge_nonexistent" in message and "usfm_vit_base_patch16" in message


def copy_classes(source, target):
    for folder in source.iterdir():
        if folder.is_dir():
            (target / folder.name).mkdir(parents=True)
            for image in sorted(folder.glob("*.png"))[:4]:
                (target / folder.name / image.name).write_bytes(image.read_bytes())


def test_corrupt_image_fails_before_training(phantom, tmp_path, cli_error):
    data = tmp_path / "data"
    copy_classes(phantom / "cls", data)
    victim = sorted((data / "cyst").glob("*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    message = cli_error(["finetune", "cls", "--data", str(data), "--out", str(tmp_path / "r"), *FAST])
    assert victim.name in message
    assert not (tmp_path / "r" / "checkpoints").exists()


def test_empty_class_folder(phantom, tmp_path, cli_error):
    data = tmp_path / "data"
    copy_classes(phantom / "cls", data)
    (data / "empty_class").mkdir()
    message = cli_error(["finetune", "cls", "--data", str(data), "--out", str(tmp_path / "r"), *FAST])
    assert "empty_class" in message


def test_missing_data_folder_and_weights(tmp_path, phantom, cli_error):
    message = cli_error(["finetune", "cls", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r"), *FAST])
    assert f"dataset folder not found: {tmp_path / 'nowhere'}" in message and not (tmp_path / "r").exists()
    message = cli_error(["finetune", "cls", "--data", str(phantom / "cls"), "--out", str(tmp_path / "r2"),
                                *FAST, "--weights", str(tmp_path / "missing.pth")])
    assert "missing.pth" in message


def test_predict_on_unreadable_image(finished_run, tmp_path, cli_error):
    bad = tmp_path / "in" / "bad.png"
    bad.parent.mkdir()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(bad)
    bad.write_bytes(bad.read_bytes()[:40])
    message = cli_error(["predict", "--run", str(finished_run), "--input", str(bad.parent),
                                "--out", str(tmp_path / "out"), "--no-progress"])
    assert "bad.png" in message


def test_unknown_model_argument(phantom, tmp_path, cli_error):
    message = cli_error(["finetune", "cls", "--data", str(phantom / "cls"), "--out", str(tmp_path / "r"),
                                *FAST, "--set", "model_args={dept: 4}"])
    assert "usfm_vit_tiny_patch16" in message and "dept" in message


@pytest.mark.parametrize("extra, lr_and_epochs", [
    ([], (0.01, 30)),
    (["--lr", "1e-3", "--epochs", "4"], (1e-3, 4)),
    (["--set", "optim.lr=0.2", "--lr", "1e-3", "--set", "epochs=6", "--epochs", "4"], (0.2, 6)),
])
def test_preset_then_flag_then_set_on_the_same_key(extra, lr_and_epochs):
    args = build_parser().parse_args(["finetune", "cls", "--data", "d", "--out", "o", "--preset", "uscl", *extra])
    config = cls_config_from_args(ClsFinetuneConfig(), args, CLS_FLAGS)
    assert (config.optim.lr, config.epochs) == lr_and_epochs
    assert config.optim.optimizer == "adam"  # the preset's other keys stay
