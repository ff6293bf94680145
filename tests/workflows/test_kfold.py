"""Grouped k-fold cross-validation on phantom data: fold hygiene, summary numbers, outputs, resume, fold files."""

import csv
import json
from collections import defaultdict

import lightning as L
import numpy as np
import pytest

import sonofm.models.weights
import sonofm.workflows.kfold
from sonofm.data.layouts import load_index
from sonofm.data.splits import load_split, save_folds, save_split
from sonofm.errors import SonofmError
from sonofm.models import create_backbone, save_backbone_weights
from sonofm.models.state_dict_file import read_weights_file
from sonofm.runs.run_folder import RunFolder
from sonofm.tasks.cls.finetune import ClsFinetuneConfig
from sonofm.engine.data import load_or_make_splits
from sonofm.workflows.kfold import KfoldConfig, run_kfold

CLASSES = ["cyst", "irregular", "none", "solid_round"]


def quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def phantom_cls(phantom_set):
    """96 images, 4 classes, 24 groups of 4 frames."""
    return phantom_set(n_per_class=24, size=64, seed=1) / "cls"


def small_config(data, **changes) -> KfoldConfig:
    config = KfoldConfig(data=str(data), model="resnet18", img_size=64, epochs=1, batch_size=32, folds=3,
                         gradcam_per_class=1, num_workers=0, progress=False)
    config.optim.lr = 1e-3
    for key, value in changes.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="module")
def kfold_run(phantom_cls, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "kfold"
    return out, run_kfold(small_config(phantom_cls), out, echo=quiet)


def read_rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def read_matrix(path) -> np.ndarray:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["true\\predicted", *CLASSES] and [row[0] for row in rows[1:]] == CLASSES
    return np.array([[int(value) for value in row[1:]] for row in rows[1:]])


def split_members(run, fold: int) -> dict[str, list[dict[str, str]]]:
    members = defaultdict(list)
    for row in read_rows(run / f"fold_{fold}" / "split.csv"):
        members[row["split"]].append(row)
    return members


def test_folds_are_grouped_and_every_image_is_tested_once(kfold_run):
    run, _ = kfold_run
    folds = read_rows(run / "folds.csv")
    assert len(folds) == 96 and {row["fold"] for row in folds} == {"0", "1", "2"}
    folds_of_group = defaultdict(set)
    for row in folds:
        folds_of_group[row["group"]].add(row["fold"])
    assert all(len(found) == 1 for found in folds_of_group.values())
    tested = []
    for fold in range(3):
        members = split_members(run, fold)
        test_names = {row["name"] for row in members["test"]}
        assert test_names == {row["name"] for row in folds if row["fold"] == str(fold)}
        groups = {part: {row["group"] for row in rows} for part, rows in members.items()}
        assert not groups["test"] & (groups["train"] | groups["val"]) and not groups["train"] & groups["val"]
        # validation comes from the training folds, about 1/(K-1) = half of their groups here
        assert members["val"] and not {row["name"] for row in members["val"]} & test_names
        assert 0.3 <= len(groups["val"]) / (len(groups["val"]) + len(groups["train"])) <= 0.7
        assert len(members["train"]) + len(members["val"]) + len(members["test"]) == 96
        tested += sorted(test_names)
    assert sorted(tested) == sorted(row["name"] for row in folds)  # each image tested exactly once


def test_summed_confusion_matrix_and_pooled_metrics(kfold_run):
    run, metrics = kfold_run
    summed = read_matrix(run / "confusion_matrix_summed.csv")
    per_fold = [read_matrix(run / f"fold_{k}/confusion_matrix_test.csv") for k in range(3)]
    assert summed.sum() == 96 and (summed == sum(per_fold)).all()
    assert (summed.sum(axis=1) == 24).all()  # every image of every class tested once
    assert metrics["pooled/accuracy"] == pytest.approx(np.trace(summed) / 96)
    recall = np.diag(summed) / summed.sum(axis=1)
    for index, name in enumerate(CLASSES):
        assert metrics[f"pooled/recall/{name}"] == pytest.approx(recall[index])
        if summed[:, index].sum():
            assert metrics[f"pooled/precision/{name}"] == pytest.approx(summed[index, index] / summed[:, index].sum())
    assert metrics["pooled/balanced_accuracy"] == pytest.approx(recall.mean())


def test_mean_and_std_are_numpy_over_folds(kfold_run):
    run, metrics = kfold_run
    assert json.loads((run / "metrics.json").read_text()) == pytest.approx(metrics, nan_ok=True)
    keys = ["accuracy", "balanced_accuracy", "macro_f1", "auroc", *(f"precision/{c}" for c in CLASSES),
            *(f"recall/{c}" for c in CLASSES)]
    for key in keys:
        values = [metrics[f"fold_{k}/test/{key}"] for k in range(3)]
        fold_json = [json.loads((run / f"fold_{k}/metrics.json").read_text())[f"test/{key}"] for k in range(3)]
        assert values == pytest.approx(fold_json)
        assert metrics[f"mean/{key}"] == pytest.approx(np.mean(values)), key
        assert metrics[f"std/{key}"] == pytest.approx(np.std(values)), key


def test_outputs_and_fold_run_folders(kfold_run):
    run, _ = kfold_run
    for name in ("config.yaml", "folds.csv", "metrics.json", "folds_summary.csv", "confusion_matrix_summed.png",
                 "confusion_matrix_summed.csv"):
        assert (run / name).is_file(), name
    for fold in range(3):
        for name in ("config.yaml", "split.csv", "log.csv", "metrics.json", "model.safetensors",
                     "checkpoints/last.ckpt", "confusion_matrix_test.csv"):
            assert (run / f"fold_{fold}" / name).is_file(), (fold, name)
        split_file = (run / "splits" / f"fold_{fold}.csv").resolve()
        assert f"split_file: {split_file}" in (run / f"fold_{fold}/config.yaml").read_text()
    rows = read_rows(run / "folds_summary.csv")
    assert [row["fold"] for row in rows] == ["0", "1", "2"] and sum(int(row["test_images"]) for row in rows) == 96
    # one Grad-CAM figure per class and fold, of one of that fold's test images of that class
    figures = sorted(path.name for path in (run / "gradcam").glob("*.png"))
    assert len(figures) == 3 * len(CLASSES)
    for fold in range(3):
        test_stems = {row["name"].split("/")[-1].removesuffix(".png"): row["name"].split("/")[0]
                      for row in split_members(run, fold)["test"]}
        for name in CLASSES:
            (figure,) = [f for f in figures if f.startswith(f"fold_{fold}_{name}_")]
            assert test_stems[figure.removeprefix(f"fold_{fold}_{name}_").removesuffix(".png")] == name
    assert not list(run.glob("**/*.tmp"))


def test_finished_run_is_refused(kfold_run, phantom_cls):
    run, _ = kfold_run
    before = [(run / f"fold_{k}/model.safetensors").stat().st_mtime_ns for k in range(3)]
    with pytest.raises(SonofmError, match="is finished; pass --overwrite"):
        run_kfold(small_config(phantom_cls), run, echo=quiet)
    assert [(run / f"fold_{k}/model.safetensors").stat().st_mtime_ns for k in range(3)] == before


class CrashInSecondFit(L.Callback):
    """Raises at the start of epoch 1 of the second fit (fold 1), after fold 0 finished."""

    def __init__(self):
        self.fits = 0

    def on_fit_start(self, trainer, pl_module):
        self.fits += 1

    def on_train_epoch_start(self, trainer, pl_module):
        if self.fits == 2 and trainer.current_epoch == 1:
            raise RuntimeError("simulated crash")


def test_rerun_skips_finished_folds_and_resumes_the_interrupted_one(phantom_cls, tmp_path):
    config = small_config(phantom_cls, folds=2, epochs=2, gradcam_per_class=0)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_kfold(config, tmp_path / "run", echo=quiet, callbacks=[CrashInSecondFit()])
    run = tmp_path / "run"
    assert (run / "fold_0/metrics.json").is_file() and not (run / "fold_1/metrics.json").exists()
    assert (run / "fold_1/checkpoints/last.ckpt").is_file() and not (run / "metrics.json").exists()
    finished_model = (run / "fold_0/model.safetensors").stat().st_mtime_ns
    first_epoch = (run / "fold_1/log.csv").read_text().splitlines()[:2]
    messages = []
    metrics = run_kfold(config, run, echo=messages.append)
    assert (run / "fold_0/model.safetensors").stat().st_mtime_ns == finished_model  # not retrained
    assert any(message.startswith("fold 0: finished earlier, kept") for message in messages)
    assert any(message.startswith("resuming") and "fold_1" in message for message in messages)
    log = (run / "fold_1/log.csv").read_text().splitlines()
    assert log[:2] == first_epoch and len(log) == 1 + 2  # epoch 0 kept, epoch 1 trained after the resume
    assert {"fold_1/test/accuracy", "mean/accuracy", "pooled/accuracy"} <= metrics.keys()
    assert not (run / "gradcam").exists()


def test_fold_file_is_honoured_with_a_vit(phantom_cls, tmp_path):
    index = load_index(phantom_cls, task="cls")
    # folds by group number: g000-g002 in fold 0, the others in fold 1 (not what kfold_assignments would pick)
    folds = [0 if int(sample.group.rsplit("_g", 1)[1]) < 3 else 1 for sample in index.samples]
    save_folds(index, folds, tmp_path / "folds.csv")
    config = small_config(phantom_cls, folds=None, fold_file=str(tmp_path / "folds.csv"), epochs=1,
                          model="usfm_vit_tiny_patch16", model_args={"depth": 1}, img_size=32, mode="partial")
    metrics = run_kfold(config, tmp_path / "run", echo=quiet)
    assert (tmp_path / "run/folds.csv").read_text() == (tmp_path / "folds.csv").read_text()
    for fold in (0, 1):
        tested = {row["name"] for row in split_members(tmp_path / "run", fold)["test"]}
        assert tested == {row["name"] for row in read_rows(tmp_path / "folds.csv") if row["fold"] == str(fold)}
    assert not (tmp_path / "run/fold_2").exists() and "fold_1/test/accuracy" in metrics
    assert len(list((tmp_path / "run/gradcam").glob("fold_1_*.png"))) == len(CLASSES)


def test_a_weights_file_is_read_once_for_all_folds(phantom_cls, tmp_path, monkeypatch):
    weights = tmp_path / "encoder.safetensors"
    save_backbone_weights(create_backbone("usfm_vit_tiny_patch16", img_size=32, depth=1), weights)
    reads = []

    def counted_read(path):
        reads.append(path)
        return read_weights_file(path)

    monkeypatch.setattr(sonofm.workflows.kfold, "read_weights_file", counted_read)
    monkeypatch.setattr(sonofm.models.weights, "read_weights_file", counted_read)
    config = small_config(phantom_cls, epochs=1, gradcam_per_class=0, model="usfm_vit_tiny_patch16",
                          model_args={"depth": 1}, img_size=32, weights=str(weights))
    messages = []
    metrics = run_kfold(config, tmp_path / "run", echo=messages.append)
    assert reads == [str(weights)]
    loaded = [message for message in messages if message.startswith(f"{weights}: loaded ")]
    assert len(loaded) == 3 and "fold_2/test/accuracy" in metrics  # every fold started from the tensors read once


def test_split_file_fixes_a_finetuning_split(phantom_cls, tmp_path):
    index = load_index(phantom_cls, task="cls")
    chosen = {"train": index.samples[:40], "val": index.samples[40:50], "test": index.samples[50:60]}
    save_split(chosen, tmp_path / "given.csv")
    config = ClsFinetuneConfig(data=str(phantom_cls), split_file=str(tmp_path / "given.csv"))
    run = RunFolder(tmp_path / "run")
    splits = load_or_make_splits(run, index, config, resuming=False)
    assert splits == chosen and load_split(run.split, index) == chosen


def test_split_file_naming_unknown_images_is_refused(phantom_cls, tmp_path):
    (tmp_path / "given.csv").write_text("name,split,group,label\ncyst/ghost.png,train,g,0\n")
    config = ClsFinetuneConfig(data=str(phantom_cls), split_file=str(tmp_path / "given.csv"))
    with pytest.raises(SonofmError, match="given.csv names 1 images missing from .*cyst/ghost.png"):
        load_or_make_splits(RunFolder(tmp_path / "run"), load_index(phantom_cls, task="cls"), config, resuming=False)
    assert not (tmp_path / "run").exists()
