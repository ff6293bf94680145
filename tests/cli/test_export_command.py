"""`sonofm export` (ONNX, TorchScript) of tiny cls, seg and enhance runs: parity with PyTorch, metadata, predict
--onnx equal to predict --run, embed --run."""

import csv
import json

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from sonofm.cli.main import main
from sonofm.export.onnx_runtime import OnnxModel
from sonofm.export.parity import parity_batch
from sonofm.export.preprocessing import InferenceWrapper
from sonofm.runs.run_model import load_run_model

COMMON = ["--img-size", "32", "--epochs", "1", "--batch-size", "16", "--num-workers", "0", "--no-progress"]
VIT = ["--model", "usfm_vit_tiny_patch16", "--set", "model_args={depth: 2}"]


@pytest.fixture(scope="module")
def phantom(phantom_set):
    return phantom_set(n_per_class=4, size=48, seed=3, frames_per_group=1)


def finetune(tmp_path_factory, task, phantom, *extra):
    out = tmp_path_factory.mktemp("runs") / task
    data = phantom / ("cls" if task == "enhance" else task)
    assert main(["finetune", task, "--data", str(data), "--out", str(out), *COMMON, *extra]) == 0
    return out


@pytest.fixture(scope="module")
def cls_run(phantom, tmp_path_factory):
    return finetune(tmp_path_factory, "cls", phantom, *VIT)


@pytest.fixture(scope="module")
def seg_run(phantom, tmp_path_factory):
    return finetune(tmp_path_factory, "seg", phantom, "--model", "usfm_vit_tiny_patch16", "--set",
                    "model_args={depth: 4}", "--set", "head_args={channels: 16}")


@pytest.fixture(scope="module")
def cls_onnx(cls_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "cls.onnx"
    assert main(["export", "--run", str(cls_run), "--format", "onnx", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def seg_onnx(seg_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "seg.onnx"
    assert main(["export", "--run", str(seg_run), "--format", "onnx", "--out", str(out)]) == 0
    return out


def reference_output(run, batch):
    loaded = load_run_model(run)
    with torch.inference_mode():
        return InferenceWrapper(loaded.model, loaded.task).eval()(batch)


def test_onnx_export_matches_pytorch_with_dynamic_batch(cls_run, cls_onnx, capsys):
    model = OnnxModel(cls_onnx)
    batch = parity_batch(32, batch_size=5, seed=7)
    assert model(batch).shape == (5, 4)
    assert (model(batch) - reference_output(cls_run, batch)).abs().max() <= 1e-4
    info = json.loads(dict((p.key, p.value) for p in onnx.load(str(cls_onnx)).metadata_props)["sonofm_preprocessing"])
    assert info["task"] == "cls" and info["img_size"] == 32 and info["classes"] == ["cyst", "irregular", "none",
                                                                                    "solid_round"]
    assert info["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert json.loads(cls_onnx.with_name("cls.onnx.json").read_text()) == info


def test_seg_onnx_and_torchscript_exports_pass_parity(seg_run, seg_onnx, tmp_path, capsys):
    assert main(["export", "--run", str(seg_run), "--format", "torchscript", "--out", str(tmp_path / "seg.pt")]) == 0
    out = capsys.readouterr().out
    assert float(out.split("parity: max abs difference ")[1].split()[0]) <= 1e-4
    batch = parity_batch(32, batch_size=3, seed=5)
    expected = reference_output(seg_run, batch)
    assert expected.shape == (3, len(load_run_model(seg_run).classes), 32, 32)
    with torch.no_grad():
        assert (torch.jit.load(str(tmp_path / "seg.pt"))(batch) - expected).abs().max() <= 1e-4
    assert (OnnxModel(seg_onnx)(batch) - expected).abs().max() <= 1e-4
    assert json.loads(seg_onnx.with_name("seg.onnx.json").read_text())["task"] == "seg"


def test_predict_onnx_equals_predict_run_for_classification(cls_run, cls_onnx, phantom, tmp_path):
    images = str(phantom / "cls" / "cyst")
    assert main(["predict", "--run", str(cls_run), "--input", images, "--out", str(tmp_path / "a"), "--no-progress",
                 "--precision", "32"]) == 0
    assert main(["predict", "--onnx", str(cls_onnx), "--input", images, "--out", str(tmp_path / "b"),
                 "--no-progress"]) == 0
    rows_a, rows_b = (list(csv.DictReader((tmp_path / d / "predictions.csv").open())) for d in "ab")
    assert len(rows_a) == len(rows_b) == 4
    for a, b in zip(rows_a, rows_b):
        assert a["path"] == b["path"] and a["prediction"] == b["prediction"]
        for key in a:
            if key.startswith("prob_"):
                assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-4)


def test_predict_onnx_equals_predict_run_for_segmentation(seg_run, seg_onnx, phantom, tmp_path):
    onnx_path = seg_onnx
    images = str(phantom / "seg" / "images")
    assert main(["predict", "--run", str(seg_run), "--input", images, "--out", str(tmp_path / "a"), "--no-progress",
                 "--precision", "32"]) == 0
    assert main(["predict", "--onnx", str(onnx_path), "--input", images, "--out", str(tmp_path / "b"),
                 "--no-progress"]) == 0
    masks = sorted((tmp_path / "a" / "masks").rglob("*.png"))
    assert masks
    for mask in masks:
        other = tmp_path / "b" / mask.relative_to(tmp_path / "a")
        assert np.array_equal(np.asarray(Image.open(mask)), np.asarray(Image.open(other)))


def test_missing_onnx_file_is_one_line_error(tmp_path, cli_error):
    message = cli_error(["predict", "--onnx", str(tmp_path / "none.onnx"), "--input", str(tmp_path),
                         "--out", str(tmp_path / "o")])
    assert "none.onnx does not exist" in message


def test_resnet_classifier_exports_to_onnx_and_torchscript(phantom, tmp_path_factory, tmp_path, capsys):
    run = finetune(tmp_path_factory, "cls", phantom, "--model", "resnet18")
    capsys.readouterr()
    for fmt, name in (("onnx", "r.onnx"), ("torchscript", "r.pt")):
        assert main(["export", "--run", str(run), "--format", fmt, "--out", str(tmp_path / name)]) == 0
        assert float(capsys.readouterr().out.split("max abs difference ")[1].split()[0]) <= 1e-4
    batch = parity_batch(32, batch_size=3, seed=2)
    assert (OnnxModel(tmp_path / "r.onnx")(batch) - reference_output(run, batch)).abs().max() <= 1e-4


def test_embed_with_a_runs_backbone(cls_run, phantom, tmp_path):
    out = tmp_path / "e.npz"
    assert main(["embed", "--run", str(cls_run), "--input", str(phantom / "cls" / "none"), "--out", str(out),
                 "--no-progress"]) == 0
    assert np.load(out)["embeddings"].shape == (4, 192)


def test_enhancement_run_exports_and_predicts_like_pytorch(phantom, tmp_path_factory, tmp_path):
    run = finetune(tmp_path_factory, "enhance", phantom, *VIT, "--degradation", "blur")
    onnx_path = tmp_path / "enh.onnx"
    assert main(["export", "--run", str(run), "--format", "onnx", "--out", str(onnx_path)]) == 0
    batch = parity_batch(32, batch_size=3, seed=4)
    assert (OnnxModel(onnx_path)(batch) - reference_output(run, batch)).abs().max() <= 1e-4
    images = str(phantom / "cls" / "cyst")
    assert main(["predict", "--run", str(run), "--input", images, "--out", str(tmp_path / "a"), "--no-progress",
                 "--precision", "32"]) == 0
    assert main(["predict", "--onnx", str(onnx_path), "--input", images, "--out", str(tmp_path / "b"),
                 "--no-progress"]) == 0
    restored = sorted((tmp_path / "a").rglob("*.png"))
    assert len(restored) == 4
    for image in restored:
        other = np.asarray(Image.open(tmp_path / "b" / image.relative_to(tmp_path / "a")), dtype=np.int16)
        assert np.abs(np.asarray(Image.open(image), dtype=np.int16) - other).max() <= 1
