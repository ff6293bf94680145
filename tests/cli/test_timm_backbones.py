"""``--model timm/<name>`` through the CLI: a timm CNN fine-tunes (partial, from a local timm weights file), then
predicts, evaluates, reloads and embeds with the same numbers; a timm ConvNeXt segments; a model without usable
feature levels and an unknown name are one-line errors."""

import contextlib
import csv
import io
import json
import shutil

import numpy as np
import pytest
import timm
from PIL import Image
from safetensors.torch import save_file

import sonofm
from sonofm.cli.main import main

FAST = ["--img-size", "64", "--epochs", "2", "--batch-size", "16", "--num-workers", "0", "--no-progress",
        "--precision", "32"]


@pytest.fixture(scope="module")
def phantom(phantom_set):
    return phantom_set(n_per_class=8, size=64, seed=3)


@pytest.fixture(scope="module")
def timm_weights(tmp_path_factory):
    """A random resnet10t saved as timm saves it: the whole model, its 1000-class ``fc`` included."""
    path = tmp_path_factory.mktemp("timm") / "resnet10t.safetensors"
    model = timm.create_model("resnet10t", pretrained=False)
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, path)
    return path


@pytest.fixture(scope="module")
def cls_run(phantom, timm_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cls"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["finetune", "cls", "--data", str(phantom / "cls"), "--out", str(out), "--model",
                     "timm/resnet10t", "--weights", str(timm_weights), "--mode", "partial", *FAST]) == 0
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def seg_run(phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "seg"
    assert main(["finetune", "seg", "--data", str(phantom / "seg"), "--out", str(out), "--model", "timm/convnext_atto",
                 "--set", "head_args={channels: 16}", *FAST]) == 0
    return out


def test_partial_fine_tuning_from_a_local_timm_file(cls_run):
    out, printed = cls_run
    assert "loaded 84 tensors, missing 0, unexpected 0, ignored 2" in printed
    assert "ignored 2 (timm classifier head, not part of the backbone), e.g. fc.bias" in printed
    assert "model: timm/resnet10t" in (out / "config.yaml").read_text()
    with (out / "param_groups.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {row["name"].split(".")[0] + "." + row["name"].split(".")[1] for row in rows} == {
        "backbone.layer4", "fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}
    assert {row["layer_id"] for row in rows if row["name"].startswith("backbone.")} == {"4"}


def test_the_run_predicts_evaluates_reloads_and_embeds_with_the_same_numbers(cls_run, phantom, tmp_path):
    out, _ = cls_run
    images = sorted((phantom / "cls" / "cyst").glob("*.png"))
    assert main(["predict", "--run", str(out), "--input", str(images[0].parent), "--out", str(tmp_path / "pred"),
                 "--no-progress", "--precision", "32"]) == 0
    with (tmp_path / "pred" / "predictions.csv").open() as handle:
        expected = {row["path"]: row for row in csv.DictReader(handle)}
    lone = tmp_path / "lone.safetensors"
    shutil.copy(out / "model.safetensors", lone)
    for model in (sonofm.load(out), sonofm.load(lone)):
        for path, probabilities in zip(images, model.predict(images)):
            for name, value in probabilities.items():
                assert value == pytest.approx(float(expected[str(path)][f"prob_{name}"]), abs=1e-5)
    assert main(["evaluate", "--run", str(out), "--no-progress"]) == 0
    evaluated = json.loads((out / "evaluate_test.json").read_text())
    assert evaluated["test/accuracy"] == pytest.approx(json.loads((out / "metrics.json").read_text())["test/accuracy"])
    assert main(["embed", "--run", str(out), "--input", str(images[0].parent), "--out", str(tmp_path / "e.npz"),
                 "--no-progress"]) == 0
    embedded = np.load(tmp_path / "e.npz")
    assert embedded["embeddings"].shape == (len(images), 512)
    assert np.abs(sonofm.load(out).embed(images) - embedded["embeddings"]).max() <= 1e-5


def test_embed_with_a_timm_model_and_its_weights_file(timm_weights, phantom, tmp_path):
    folder = phantom / "cls" / "cyst"
    assert main(["embed", "--model", "timm/resnet10t", "--weights", str(timm_weights), "--img-size", "64",
                 "--input", str(folder), "--out", str(tmp_path / "e.npz"), "--pool", "cls", "--no-progress"]) == 0
    embedded = np.load(tmp_path / "e.npz")["embeddings"]
    assert embedded.shape == (len(list(folder.glob("*.png"))), 512) and np.isfinite(embedded).all()


def test_a_timm_convnext_segments_and_reloads(seg_run, phantom, tmp_path):
    metrics = json.loads((seg_run / "metrics.json").read_text())
    assert 0.0 <= metrics["test/dice"] <= 1.0
    images = sorted((phantom / "seg" / "images").glob("*.png"))[:3]
    folder = tmp_path / "three"
    folder.mkdir()
    for path in images:
        shutil.copy(path, folder / path.name)
    assert main(["predict", "--run", str(seg_run), "--input", str(folder), "--out", str(tmp_path / "pred"),
                 "--no-progress", "--precision", "32"]) == 0
    for path, mask in zip(images, sonofm.load(seg_run).predict(sorted(folder.iterdir()))):
        assert np.array_equal(mask, np.array(Image.open(tmp_path / "pred" / "masks" / path.name)))


def test_a_model_without_usable_levels_cannot_segment(phantom, tmp_path, cli_error):
    message = cli_error(["finetune", "seg", "--data", str(phantom / "seg"), "--out", str(tmp_path / "r"),
                         "--model", "timm/pit_ti_224", *FAST])
    assert "timm/pit_ti_224 cannot feed a segmentation head: its feature levels are at strides [8, 16, 32]" in message


def test_an_unknown_timm_name_suggests_close_ones(phantom, tmp_path, cli_error):
    message = cli_error(["finetune", "cls", "--data", str(phantom / "cls"), "--out", str(tmp_path / "r"),
                         "--model", "timm/resnet10", *FAST])
    assert "unknown timm model 'resnet10'; close matches: timm/resnet10t" in message
    assert "timm.list_models(" in message and not (tmp_path / "r").exists()
