"""`sonofm sam finetune`, `train-prompter` and `automask` through the CLI on a tiny random-init SAM and phantom data:
the prompter run, the anatomy maps and their index, a resumed automask; bad input and the commands of the other tasks
(predict, evaluate, export) on a SAM run fail with one line and exit code 2."""

import csv
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from sonofm.cli.main import main
from sonofm.sam import build_sam, save_sam_checkpoint

TRAIN = ["--epochs", "1", "--batch-size", "8", "--num-workers", "0", "--precision", "32", "--no-progress"]
AUTOMASK = ["--batch-size", "4", "--num-workers", "0", "--precision", "32", "--no-progress"]


@pytest.fixture(scope="module")
def phantom(phantom_set):
    """16 phantom images with masks of two anatomy classes (lesion, layer)."""
    return phantom_set(n_per_class=4, size=48, seed=3, frames_per_group=1) / "seg"


@pytest.fixture(scope="module")
def a_sam_run(phantom, tmp_path_factory):
    torch.manual_seed(0)
    checkpoint = save_sam_checkpoint(build_sam("vit_tiny"), tmp_path_factory.mktemp("sam") / "sam_vit_tiny.pth")
    out = tmp_path_factory.mktemp("runs") / "a_sam"
    assert main(["sam", "finetune", "--data", str(phantom), "--sam-checkpoint", str(checkpoint), "--sam-type",
                 "vit_tiny", "--img-size", "64", "--prompts", "box", "--out", str(out), *TRAIN]) == 0
    return out


@pytest.fixture(scope="module")
def prompter_run(phantom, a_sam_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "prompter"
    assert main(["sam", "train-prompter", "--run", str(a_sam_run), "--data", str(phantom), "--out", str(out),
                 *TRAIN]) == 0
    return out


@pytest.fixture(scope="module")
def unlabeled(phantom, tmp_path_factory):
    """Five phantom images at other sizes, two of them in a subfolder."""
    folder = tmp_path_factory.mktemp("unlabeled")
    (folder / "sub").mkdir()
    sources = sorted((phantom / "images").glob("*.png"))[:5]
    for number, (source, size) in enumerate(zip(sources, [(72, 40), (48, 48), (30, 56), (96, 64), (48, 48)])):
        Image.open(source).convert("L").resize(size).save(folder / ("sub" if number % 2 else ".") / f"i{number}.png")
    return folder


def test_train_prompter_adds_a_prompter_trains_the_decoder_and_keeps_the_encoder(prompter_run, a_sam_run):
    base, trained = load_file(a_sam_run / "model.safetensors"), load_file(prompter_run / "model.safetensors")
    assert any(key.startswith("prompter.") for key in trained) and not any(key.startswith("prompter.") for key in base)
    encoder = [key for key in base if key.startswith("sam.image_encoder.")]
    assert encoder  # the SAMUS parts of stage one (the default adapter)
    for key in encoder:
        torch.testing.assert_close(trained[key], base[key], rtol=0, atol=0, msg=key)
    decoder = [key for key in base if key.startswith("sam.mask_decoder.")]
    assert any(not torch.equal(trained[key], base[key]) for key in decoder)


def test_automask_writes_an_id_map_per_image_and_skips_them_on_rerun(prompter_run, unlabeled, tmp_path, capsys):
    out = tmp_path / "maps"
    argv = ["sam", "automask", "--run", str(prompter_run), "--images", str(unlabeled), "--out", str(out), *AUTOMASK]
    assert main(argv) == 0
    assert "5 masks written, 0 already done, 0 unreadable images skipped" in capsys.readouterr().out
    with (out / "index.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["mask"] for row in rows) == ["masks/i0.png", "masks/i2.png", "masks/i4.png",
                                                  "masks/sub/i1.png", "masks/sub/i3.png"]
    for row in rows:
        image, ids = Image.open(row["image"]), np.asarray(Image.open(out / row["mask"]))
        assert ids.shape == (image.height, image.width) and ids.dtype == np.uint8
        present = sorted(int(value) for value in np.unique(ids) if value)
        assert set(present) <= {1, 2} and row["classes_present"] == ";".join(map(str, present))
    assert main(argv) == 0
    assert "0 masks written, 5 already done" in capsys.readouterr().out


def test_automask_of_a_missing_image_folder_is_named_and_claims_no_output(prompter_run, tmp_path, cli_error):
    message = cli_error(["sam", "automask", "--run", str(prompter_run), "--images", str(tmp_path / "no_images"),
                         "--out", str(tmp_path / "maps"), *AUTOMASK])
    assert f"--images {tmp_path / 'no_images'} is not a folder" in message
    assert not (tmp_path / "maps").exists()  # a corrected rerun into the same --out is not refused


def test_train_prompter_on_an_unfinished_a_sam_run_is_refused(phantom, a_sam_run, tmp_path, cli_error):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(a_sam_run, unfinished, ignore=shutil.ignore_patterns("model.safetensors", "metrics.json"))
    message = cli_error(["sam", "train-prompter", "--run", str(unfinished), "--data", str(phantom),
                         "--out", str(tmp_path / "p"), *TRAIN])
    assert "no model.safetensors yet" in message and not (tmp_path / "p").exists()


@pytest.mark.parametrize("command", [["evaluate"], ["predict", "--input", "IMAGES", "--out", "OUT"],
                                     ["export", "--format", "onnx", "--out", "OUT/m.onnx"]])
def test_other_tasks_commands_on_a_sam_run_point_to_sam_evaluate(command, a_sam_run, phantom, tmp_path, cli_error):
    argv = [str(phantom / "images") if part == "IMAGES" else part.replace("OUT", str(tmp_path / "out"))
            for part in command]
    message = cli_error([argv[0], "--run", str(a_sam_run), *argv[1:]])
    assert "holds a 'sam' model" in message and f"`sonofm sam evaluate --run {a_sam_run}`" in message
    assert not (tmp_path / "out").exists()
