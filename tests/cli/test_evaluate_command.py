"""`sonofm evaluate --split` and `--data` on a tiny classification run: the run's own validation split gives its
training-time metrics, a layout with splits is cut to `--split`, a layout without splits is evaluated whole, and a data
set with other classes is a one-line error."""

import json
import shutil
from pathlib import Path

import pytest

from sonofm.cli.main import main

CLASSES = ("cyst", "irregular", "none", "solid_round")
FAST = ["--model", "usfm_vit_tiny_patch16", "--set", "model_args={depth: 1}", "--img-size", "32", "--epochs", "1",
        "--batch-size", "16", "--num-workers", "0", "--precision", "32", "--no-progress"]


@pytest.fixture(scope="module")
def phantom(phantom_set):
    return phantom_set(n_per_class=8, size=48, seed=3, frames_per_group=1) / "cls"


@pytest.fixture(scope="module")
def finished_run(phantom, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cls"
    assert main(["finetune", "cls", "--data", str(phantom), "--out", str(out), *FAST]) == 0
    return out


@pytest.fixture(scope="module")
def usfm_layout(phantom, tmp_path_factory):
    """``ROOT/{train,val,test}/<class>/``: per class, images 0-3 train, 4-5 val, 6-7 test."""
    root = tmp_path_factory.mktemp("usfm") / "phantom_usfm"
    for name in CLASSES:
        images = sorted((phantom / name).glob("*.png"))
        for split, chosen in (("train", images[:4]), ("val", images[4:6]), ("test", images[6:])):
            (root / split / name).mkdir(parents=True)
            for image in chosen:
                shutil.copy(image, root / split / name / image.name)
    return root


def flat_copy(split_folder: Path, target: Path) -> Path:
    """The class folders of one split of the USFM layout as a flat layout (no splits)."""
    shutil.copytree(split_folder, target)
    return target


def evaluate(capsys, run: Path, *extra: str) -> tuple[dict[str, float], Path]:
    """Run ``sonofm evaluate --run RUN EXTRA...``; return the metrics it wrote and the file it names."""
    assert main(["evaluate", "--run", str(run), "--no-progress", *extra]) == 0
    written = Path(capsys.readouterr().out.rsplit("written to ", 1)[1].strip())
    return json.loads(written.read_text()), written


def test_split_val_reproduces_the_runs_validation_metrics(finished_run, capsys):
    trained = json.loads((finished_run / "metrics.json").read_text())
    evaluated, written = evaluate(capsys, finished_run, "--split", "val")
    assert written == finished_run / "evaluate_val.json"
    assert evaluated.keys() and all(key.startswith("val/") for key in evaluated)
    for key in ("val/accuracy", "val/balanced_accuracy", "val/macro_f1"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key


@pytest.mark.parametrize("split", ["val", "test"])
def test_data_with_splits_is_cut_to_the_split(finished_run, phantom, usfm_layout, split, tmp_path, capsys):
    cut, written = evaluate(capsys, finished_run, "--data", str(usfm_layout), "--split", split)
    assert written.name == f"evaluate_phantom_usfm_{split}.json"
    whole, written = evaluate(capsys, finished_run, "--data",
                              str(flat_copy(usfm_layout / split, tmp_path / f"only_{split}")), "--split", split)
    assert written.name == f"evaluate_only_{split}.json"
    assert set(cut) == set(whole) and f"{split}/auroc" in cut
    assert cut == pytest.approx(whole, abs=1e-6)
    everything, _ = evaluate(capsys, finished_run, "--data", str(phantom), "--split", split)  # no splits: all 32
    assert everything[f"{split}/auroc"] != pytest.approx(cut[f"{split}/auroc"], abs=1e-6)
    assert (finished_run / f"confusion_matrix_phantom_usfm_{split}.png").is_file()


def test_data_with_other_classes_is_named(finished_run, usfm_layout, tmp_path, cli_error):
    data = flat_copy(usfm_layout / "test", tmp_path / "renamed")
    (data / "cyst").rename(data / "cystic")
    message = cli_error(["evaluate", "--run", str(finished_run), "--data", str(data), "--no-progress"])
    assert "cystic" in message and "differ from the run's" in message
