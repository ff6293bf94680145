"""``sonofm.load``: a run folder or a lone model.safetensors; ``predict`` and ``embed`` give the numbers of
``sonofm predict`` and ``sonofm embed`` (float32), for paths, PIL images and numpy arrays."""

import csv
import shutil

import numpy as np
import pytest
from PIL import Image

import sonofm
from sonofm.cli.main import main
from sonofm.errors import SonofmError
from sonofm.inference.embed import embed
from sonofm.inference.predict import predict_run

COMMON = ["--img-size", "32", "--epochs", "1", "--batch-size", "16", "--num-workers", "0", "--no-progress",
          "--model", "usfm_vit_tiny_patch16", "--set", "model_args={depth: 2}"]


@pytest.fixture(scope="module")
def runs(phantom_set, tmp_path_factory):
    phantom = phantom_set(n_per_class=4, size=48, seed=3, frames_per_group=1)
    out = tmp_path_factory.mktemp("api")
    seg = ["--set", "model_args={depth: 4}", "--set", "head_args={channels: 16}"]
    for task, data, extra in (("cls", "cls", []), ("seg", "seg", seg), ("enhance", "cls", ["--degradation", "speckle"])):
        assert main(["finetune", task, "--data", str(phantom / data), "--out", str(out / task),
                                     *COMMON, *extra]) == 0
    images = sorted((phantom / "seg" / "images").glob("*.png"))[:3]
    return out, images


def test_a_classifier_predicts_as_sonofm_predict_from_a_run_or_a_lone_file(runs, tmp_path):
    out, images = runs
    csv_path = predict_run(out / "cls", images[0].parent, tmp_path / "pred", progress=False, precision="32")
    with csv_path.open() as handle:
        expected = {row["path"]: row for row in csv.DictReader(handle)}
    lone = tmp_path / "lone.safetensors"
    shutil.copy(out / "cls" / "model.safetensors", lone)
    for model in (sonofm.load(out / "cls"), sonofm.load(lone)):
        assert model.task == "cls"
        predictions = model.predict(images)
        for path, probabilities in zip(images, predictions):
            row = expected[str(path)]
            assert set(probabilities) == set(model.classes)
            for name, value in probabilities.items():
                assert value == pytest.approx(float(row[f"prob_{name}"]), abs=1e-5)
    pil = sonofm.load(out / "cls").predict([Image.open(images[0]), np.asarray(Image.open(images[0]).convert("L"))])
    assert all(pil[1][name] == pytest.approx(pil[0][name], abs=1e-6) for name in pil[0])  # gray = replicated gray


def test_a_segmenter_and_an_enhancer_give_the_cli_outputs_at_each_image_size(runs, tmp_path):
    out, images = runs
    predict_run(out / "seg", images[0].parent, tmp_path / "seg", progress=False, precision="32")
    masks = sonofm.load(out / "seg").predict(images)
    for path, mask in zip(images, masks):
        expected = np.array(Image.open(tmp_path / "seg" / "masks" / path.name))
        assert mask.shape == expected.shape and np.array_equal(mask, expected)
    predict_run(out / "enhance", images[0].parent, tmp_path / "enhance", progress=False, precision="32")
    restored = sonofm.load(out / "enhance").predict(images[:2])
    for path, image in zip(images, restored):
        expected = np.array(Image.open(tmp_path / "enhance" / "restored" / path.name).convert("RGB"))
        assert image.dtype == np.uint8 and np.abs(image.astype(int) - expected.astype(int)).max() <= 1


def test_embeddings_equal_sonofm_embed(runs, tmp_path):
    out, images = runs
    folder = tmp_path / "three"
    folder.mkdir()
    for path in images:
        shutil.copy(path, folder / path.name)
    written, _ = embed(folder, tmp_path / "emb.npz", run=out / "cls", progress=False)
    expected = np.load(written)["embeddings"]
    assert np.abs(sonofm.load(out / "cls").embed(sorted(folder.iterdir())) - expected).max() <= 1e-5


def test_bad_paths_and_inputs_fail_clearly(runs, tmp_path):
    out, _ = runs
    with pytest.raises(SonofmError, match="neither a sonofm run folder nor a model.safetensors"):
        sonofm.load(tmp_path)
    with pytest.raises(SonofmError, match="uint8 numpy array of shape"):
        sonofm.load(out / "cls").predict(np.zeros((4, 4), np.float32))
