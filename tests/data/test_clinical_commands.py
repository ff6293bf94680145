"""DICOM and cine inputs through the commands that take image files: predict (run and ONNX), embed and MIM
pretraining read every sampled frame, DICOM pixel spacing gives HD95 in mm, and a corrupt file fails in one line
naming it."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from sonofm.cli.main import main
from sonofm.data.frames import FrameSampling, set_default_sampling
from sonofm.data.phantom import write_phantom_dataset

TINY = ["--model", "usfm_vit_tiny_patch16", "--set", "model_args={depth: 1}", "--img-size", "32", "--no-progress"]


@pytest.fixture(autouse=True)
def _restore_sampling():
    yield
    set_default_sampling(FrameSampling())


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    data = write_phantom_dataset(root, n_per_class=4, size=32, seed=2, frames_per_group=1) / "cls"
    run = root / "run"
    assert main(["finetune", "cls", "--data", str(data), "--out", str(run), *TINY, "--epochs", "1",
                 "--batch-size", "8", "--num-workers", "0"]) == 0
    return run


@pytest.fixture
def clinical_folder(tmp_path, media):
    """A single-frame JPEG DICOM, a 3-frame RGB DICOM, a 4-frame MP4 and a 2-frame GIF: 10 frames."""
    folder = tmp_path / "clinical"
    folder.mkdir()
    media.dicom(folder / "still.dcm", media.ramp(1, color=False), jpeg=True, spacing_mm=0.2)
    media.dicom(folder / "multi.dcm", media.ramp(3))
    media.video(folder / "loop.mp4", media.ramp(4))
    media.video(folder / "loop2.gif", media.ramp(2))
    return folder


def _rows(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_predict_reads_every_frame_and_frame_step_thins_them(cls_run, clinical_folder, tmp_path):
    assert main(["predict", "--run", str(cls_run), "--input", str(clinical_folder), "--out", str(tmp_path / "p"),
                 "--no-progress"]) == 0
    rows = _rows(tmp_path / "p" / "predictions.csv")
    names = sorted(row["path"].rsplit("/", 1)[-1] for row in rows)
    assert names == ["loop2_f0000", "loop2_f0001", "loop_f0000", "loop_f0001", "loop_f0002", "loop_f0003",
                     "multi_f0000", "multi_f0001", "multi_f0002", "still.dcm"]
    assert all(abs(sum(float(v) for k, v in row.items() if k.startswith("prob_")) - 1) < 1e-4 for row in rows)
    assert main(["predict", "--run", str(cls_run), "--input", str(clinical_folder), "--out", str(tmp_path / "q"),
                 "--frame-step", "2", "--no-progress"]) == 0
    assert len(_rows(tmp_path / "q" / "predictions.csv")) == 1 + 2 + 2 + 1  # still, multi 0/2, loop 0/2, loop2 0


def test_onnx_predict_reads_clinical_files_like_the_run(cls_run, clinical_folder, tmp_path):
    onnx = tmp_path / "model.onnx"
    assert main(["export", "--run", str(cls_run), "--format", "onnx", "--out", str(onnx)]) == 0
    assert main(["predict", "--onnx", str(onnx), "--input", str(clinical_folder), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 0
    assert main(["predict", "--run", str(cls_run), "--input", str(clinical_folder), "--out", str(tmp_path / "r"),
                 "--precision", "32", "--no-progress"]) == 0
    by_onnx = {row["path"]: row for row in _rows(tmp_path / "o" / "predictions.csv")}
    by_run = {row["path"]: row for row in _rows(tmp_path / "r" / "predictions.csv")}
    assert by_onnx.keys() == by_run.keys() and len(by_run) == 10
    for path, row in by_run.items():
        probs = [float(v) for k, v in row.items() if k.startswith("prob_")]
        onnx_probs = [float(v) for k, v in by_onnx[path].items() if k.startswith("prob_")]
        np.testing.assert_allclose(onnx_probs, probs, atol=1e-3)


def test_embed_and_pretraining_read_clinical_files(cls_run, clinical_folder, tmp_path, capsys):
    out = tmp_path / "emb.npz"
    assert main(["embed", "--run", str(cls_run), "--input", str(clinical_folder), "--out", str(out),
                 "--max-frames", "2", "--no-progress"]) == 0
    assert np.load(out)["embeddings"].shape == (1 + 2 + 2 + 2, 192)
    run = tmp_path / "mim"
    assert main(["pretrain", "mim", "--data", str(clinical_folder), "--out", str(run), *TINY, "--max-steps", "1",
                 "--batch-size", "4", "--num-workers", "0"]) == 0
    listed = (run / "images.txt").read_text().split()
    assert len(listed) == 10 and any(line.endswith("loop.mp4/loop_f0003") for line in listed)


def test_corrupt_clinical_files_fail_in_one_line(cls_run, tmp_path, cli_error):
    for name in ("broken.dcm", "broken.mp4"):
        folder = tmp_path / name.replace(".", "_")
        folder.mkdir()
        (folder / name).write_bytes(b"\x00not a medical file" * 16)
        message = cli_error(["predict", "--run", str(cls_run), "--input", str(folder), "--out", str(tmp_path / "p"),
                             "--no-progress"])
        assert name in message


def test_segmentation_on_dicom_gives_hd95_in_mm_from_the_pixel_spacing(tmp_path, media):
    (tmp_path / "seg" / "images").mkdir(parents=True)
    (tmp_path / "seg" / "masks").mkdir()
    for i in range(10):
        media.dicom(tmp_path / "seg" / "images" / f"s{i}.dcm", media.ramp(1, color=False) // (i + 1), spacing_mm=0.25)
        mask = np.zeros((32, 48), np.uint8)
        mask[8 + i % 4: 20, 10: 30 + i] = 1
        Image.fromarray(mask).save(tmp_path / "seg" / "masks" / f"s{i}.png")
    run = tmp_path / "run"
    assert main(["finetune", "seg", "--data", str(tmp_path / "seg"), "--out", str(run), *TINY, "--head", "linear",
                 "--epochs", "1", "--batch-size", "4", "--num-workers", "0"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test/hd95_mm"] == pytest.approx(0.25 * metrics["test/hd95"], rel=1e-4, nan_ok=True)
