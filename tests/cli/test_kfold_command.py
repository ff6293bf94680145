"""`sonofm kfold` and `--preset` through the CLI: flag wiring, presets and overrides, one-line errors (exit code 2)."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from sonofm.cli.finetune import CLS_FLAGS, cls_config_from_args
from sonofm.cli.kfold import KFOLD_FLAGS
from sonofm.cli.main import build_parser, main
from sonofm.data.layouts import load_index
from sonofm.data.splits import save_folds
from sonofm.tasks.cls.finetune import ClsFinetuneConfig
from sonofm.workflows.kfold import KfoldConfig

FAST = ["--model", "usfm_vit_tiny_patch16", "--set", "model_args={depth: 1}", "--img-size", "32", "--epochs", "1",
        "--num-workers", "0", "--no-progress"]


@pytest.fixture(scope="module")
def phantom(phantom_set):
    return phantom_set(n_per_class=8, size=64, seed=3) / "cls"


def config_for(argv: list[str]):
    args = build_parser().parse_args(argv)
    if args.command == "kfold":
        return cls_config_from_args(KfoldConfig(), args, KFOLD_FLAGS)
    return cls_config_from_args(ClsFinetuneConfig(), args, CLS_FLAGS)


def read_confusion(path: Path) -> np.ndarray:
    """The counts of a ``confusion_matrix*.csv`` (rows: true class, columns: predicted class)."""
    with path.open() as handle:
        return np.array([[int(count) for count in row[1:]] for row in list(csv.reader(handle))[1:]])


@pytest.mark.parametrize("command", [["finetune", "cls"], ["kfold"]])
def test_uscl_preset_and_overrides(command):
    config = config_for([*command, "--data", "d", "--out", "o", "--preset", "uscl"])
    assert (config.mode, config.epochs, config.batch_size, config.head) == ("last_block", 30, 32, "linear")
    optim = config.optim
    assert (optim.optimizer, optim.lr, optim.weight_decay, optim.layer_decay, optim.warmup_epochs) == (
        "adam", 0.01, 1e-4, 1.0, 0.0)
    # explicit flags and --set win over the preset
    config = config_for([*command, "--data", "d", "--out", "o", "--preset", "uscl", "--epochs", "5", "--lr", "0.001",
                         "--mode", "full", "--set", "optim.weight_decay=0", "--set", "batch_size=8"])
    assert (config.mode, config.epochs, config.batch_size, config.optim.lr, config.optim.weight_decay) == (
        "full", 5, 8, 0.001, 0.0)
    assert config.optim.optimizer == "adam"
    assert config_for([*command, "--data", "d", "--out", "o"]).optim.optimizer == "adamw"  # no preset: defaults


def test_kfold_flags():
    config = config_for(["kfold", "--data", "d", "--out", "o", "--folds", "3", "--fold-file", "f.csv",
                         "--gradcam-per-class", "0", "--group-by", "group", "--mode", "partial", "--task", "cls"])
    assert (config.folds, config.fold_file, config.gradcam_per_class, config.group_by, config.mode, config.task) == (
        3, "f.csv", 0, "group", "partial", "cls")


def test_kfold_runs_from_the_command_line_with_a_preset(phantom, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["kfold", "--data", str(phantom), "--folds", "2", "--preset", "uscl", "--gradcam-per-class", "0",
                 "--out", str(out), *FAST]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert (config["mode"], config["epochs"], config["optim"]["optimizer"]) == ("last_block", 1, "adam")
    assert config["folds"] == 2
    assert yaml.safe_load((out / "fold_1/config.yaml").read_text())["optim"]["lr"] == 0.01
    assert sorted(path.name for path in out.glob("fold_*")) == ["fold_0", "fold_1"]
    tested_in: dict[str, list[int]] = {}  # image -> the folds whose test split holds it
    for fold in range(2):
        with (out / "splits" / f"fold_{fold}.csv").open() as handle:
            for row in csv.DictReader(handle):
                if row["split"] == "test":
                    tested_in.setdefault(row["name"], []).append(fold)
    images = sorted(path.relative_to(phantom).as_posix() for path in phantom.glob("*/*.png"))
    assert len(images) == 32 and sorted(tested_in) == images
    assert all(len(folds) == 1 for folds in tested_in.values())
    summed = read_confusion(out / "confusion_matrix_summed.csv")
    assert summed.sum() == 32 and summed.sum(axis=1).tolist() == [8, 8, 8, 8]
    per_fold = [read_confusion(out / f"fold_{fold}" / "confusion_matrix_test.csv") for fold in range(2)]
    assert (summed == per_fold[0] + per_fold[1]).all()
    metrics = json.loads((out / "metrics.json").read_text())
    scores = {key: value for key, value in metrics.items() if not key.endswith("best_epoch")}
    assert {"fold_0/test/accuracy", "fold_1/test/auroc", "mean/accuracy", "std/accuracy",
            "pooled/macro_f1"} <= scores.keys()
    assert not any(key.startswith("fold_2/") for key in scores)
    assert all(math.isfinite(value) and 0 <= value <= 1 for value in scores.values())
    assert metrics["pooled/accuracy"] == pytest.approx(np.trace(summed) / 32)
    fold_accuracies = [metrics[f"fold_{fold}/test/accuracy"] for fold in range(2)]
    assert metrics["mean/accuracy"] == pytest.approx(np.mean(fold_accuracies))
    printed = capsys.readouterr().out
    assert "pooled" in printed and "mean" in printed
    # USCL's optimistic figure, reported apart: with one epoch, the best test epoch is the selected one
    assert all((out / f"fold_{fold}" / "test_per_epoch.csv").read_text().count("\n") == 2 for fold in range(2))
    assert metrics["optimistic/accuracy"] == pytest.approx(metrics["pooled/accuracy"])
    assert (read_confusion(out / "confusion_matrix_summed_best_test_epoch.csv") == summed).all()
    assert "optimistic (USCL's selection" in printed


def test_unknown_task(phantom, tmp_path, cli_error):
    message = cli_error(["kfold", "--task", "seg", "--data", str(phantom), "--out", str(tmp_path / "r"), *FAST])
    assert "--task must be one of cls" in message and "'seg'" in message and not (tmp_path / "r").exists()


def test_too_few_folds(phantom, tmp_path, cli_error):
    message = cli_error(["kfold", "--folds", "1", "--data", str(phantom), "--out", str(tmp_path / "r"), *FAST])
    assert "--folds must be >= 2, got 1" in message and not (tmp_path / "r").exists()
    message = cli_error(["kfold", "--folds", "50", "--data", str(phantom), "--out", str(tmp_path / "r"), *FAST])
    assert "only 8 groups; cannot make 50 grouped folds" in message and not (tmp_path / "r").exists()


def test_fold_file_naming_unknown_images(phantom, tmp_path, cli_error):
    folds = tmp_path / "folds.csv"
    folds.write_text("name,fold,group,label\ncyst/cyst_g000_f0.png,0,cyst_g000,0\ncyst/ghost.png,1,g,0\n")
    message = cli_error(["kfold", "--fold-file", str(folds), "--data", str(phantom), "--out", str(tmp_path / "r"),
                         *FAST])
    assert "folds.csv names 1 images missing from" in message and "cyst/ghost.png" in message
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("problem", ["group in two folds", "fold count", "gap"])
def test_bad_fold_files(phantom, tmp_path, cli_error, problem):
    index = load_index(phantom, task="cls")
    folds = [position % 2 for position in range(len(index.samples))]  # frames of a group alternate: split groups
    extra = []
    if problem == "fold count":
        folds = [int(sample.group.endswith("0")) for sample in index.samples]
        extra = ["--folds", "3"]
    elif problem == "gap":
        folds = [2 * int(sample.group.endswith("0")) for sample in index.samples]
    save_folds(index, folds, tmp_path / "folds.csv")
    message = cli_error(["kfold", "--fold-file", str(tmp_path / "folds.csv"), "--data", str(phantom),
                         "--out", str(tmp_path / "r"), *FAST, *extra])
    expected = {"group in two folds": "puts group 'cyst_g000' (column group) in folds [0, 1]",
                "fold count": "holds 2 folds but --folds is 3",
                "gap": "folds must be numbered 0..K-1 with K >= 2 and none empty, found [0, 2]"}[problem]
    assert expected in message and not (tmp_path / "r").exists()


def test_finetune_accepts_partial_mode_and_refuses_unknown_optimizer(phantom, tmp_path, cli_error):
    assert config_for(["finetune", "cls", "--data", "d", "--out", "o", "--mode", "partial"]).mode == "partial"
    message = cli_error(["finetune", "cls", "--data", str(phantom), "--out", str(tmp_path / "r"), *FAST,
                         "--set", "optim.optimizer=sgd"])
    assert "optim.optimizer must be one of adamw, adam, got 'sgd'" in message and not (tmp_path / "r").exists()
