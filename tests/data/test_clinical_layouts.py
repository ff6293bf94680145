"""DICOM and cine sources through the layout readers, the pretraining scan, `data check` and `finetune cls`."""

import json

import numpy as np
import pytest
from PIL import Image

from sonofm.cli.main import main
from sonofm.data.frames import FrameSampling, set_default_sampling
from sonofm.data.image_io import read_image
from sonofm.data.layouts import load_index
from sonofm.data.unlabeled import scan_image_folders


@pytest.fixture(autouse=True)
def _restore_sampling():
    yield
    set_default_sampling(FrameSampling())


def _class_folders(root, media, n=4):
    """Two classes: ``a`` holds single-frame DICOMs, ``b`` a multi-frame DICOM and a GIF."""
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    for i in range(n):
        media.dicom(root / "a" / f"s{i}.dcm", media.ramp(1, color=False) // (i + 1), spacing_mm=0.3)
    media.dicom(root / "b" / "multi.dcm", 255 - media.ramp(n, color=False), region_cm=0.02)
    media.video(root / "b" / "loop.gif", 255 - media.ramp(n))
    return root


def test_class_folders_expand_frames_with_meta_and_groups(tmp_path, media):
    index = load_index(_class_folders(tmp_path / "ds", media))
    names = [s.name for s in index.samples]
    assert names == ["s0", "s1", "s2", "s3", "loop_f0000", "loop_f0001", "loop_f0002", "loop_f0003",
                     "multi_f0000", "multi_f0001", "multi_f0002", "multi_f0003"]
    by_name = {s.name: s for s in index.samples}
    assert by_name["s0"].meta["pixel_size_mm"] == "0.3" and by_name["multi_f0002"].meta["pixel_size_mm"] == "0.2"
    assert by_name["multi_f0002"].meta["frame"] == "2"
    assert {s.group for s in index.samples if s.name.startswith("multi")} == {"b/multi.dcm"}
    assert {s.group for s in index.samples if s.name.startswith("loop")} == {"b/loop.gif"}
    assert all(read_image(s.image).shape == (32, 48, 3) for s in index.samples)
    assert not any("Doe" in v or "SECRET" in v for s in index.samples for v in s.meta.values())


def test_frame_sampling_and_labels_row(tmp_path, media):
    root = _class_folders(tmp_path / "ds", media)
    (root / "labels.csv").write_text("name,patient,pixel_size_mm\nmulti,p1,0.5\nloop,p2,\n")
    set_default_sampling(FrameSampling(step=2))
    index = load_index(root)
    frames = {s.name: s for s in index.samples if "_f" in s.name}
    assert sorted(frames) == ["loop_f0000", "loop_f0002", "multi_f0000", "multi_f0002"]
    assert frames["multi_f0002"].group == "p1" and frames["multi_f0002"].meta["pixel_size_mm"] == "0.5"
    assert frames["loop_f0000"].group == "p2"


def test_flat_segmentation_frames_find_masks(tmp_path, media):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    media.video(tmp_path / "images" / "c.avi", media.ramp(2))
    for i in range(2):
        Image.fromarray(np.eye(32, 48, dtype=np.uint8)).save(tmp_path / "masks" / f"c_f000{i}.png")
    index = load_index(tmp_path)
    assert [s.mask.name for s in index.samples] == ["c_f0000.png", "c_f0001.png"]


def test_scan_image_folders_expands_and_skips_broken(tmp_path, media):
    media.video(tmp_path / "v.mp4", media.ramp(3))
    media.dicom(tmp_path / "d.dcm", media.ramp(2, color=False))
    (tmp_path / "broken.avi").write_bytes(b"junk" * 20)
    pool = scan_image_folders([tmp_path])
    assert [p.name for p in pool.files] == ["d_f0000", "d_f0001", "v_f0000", "v_f0001", "v_f0002"]
    assert [p.name for p, _ in pool.skipped] == ["broken.avi"]


def test_data_check_lists_every_broken_source(tmp_path, media, capsys):
    root = _class_folders(tmp_path / "ds", media)
    (root / "a" / "bad.dcm").write_bytes(b"nope" * 40)
    (root / "b" / "bad.mp4").write_bytes(b"nope" * 40)
    code = main(["data", "check", str(root)])
    output = capsys.readouterr()
    text = output.out + output.err
    assert code == 1 and "bad.dcm" in text and "bad.mp4" in text


def test_finetune_cls_on_dicom_and_gif(tmp_path, media):
    root = _class_folders(tmp_path / "ds", media, n=6)
    out = tmp_path / "run"
    assert main(["finetune", "cls", "--data", str(root), "--out", str(out), "--model", "usfm_vit_tiny_patch16",
                 "--set", "model_args={depth: 1}", "--img-size", "32", "--epochs", "1", "--batch-size", "8",
                 "--num-workers", "0", "--no-progress"]) == 0
    assert "test/accuracy" in json.loads((out / "metrics.json").read_text())
    for file in out.rglob("*"):  # patient fields of the DICOMs reach no output
        assert not file.is_file() or (b"Doe" not in file.read_bytes() and b"SECRET" not in file.read_bytes())


def test_every_command_takes_the_frame_sampling_flags(tmp_path, media, capsys):
    root = _class_folders(tmp_path / "ds", media)
    assert main(["data", "check", str(root), "--frame-step", "2", "--max-frames", "1"]) == 0
    # 4 single-frame DICOMs + frame 0 of the GIF and of multi.dcm
    assert "unsplit       6  4  2" in capsys.readouterr().out
    assert main(["data", "check", str(root)]) == 0  # the next command starts from every frame again
    assert "unsplit      12  4  8" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["predict", "--run", "r", "--input", "i", "--out", "o", "--frame-step"])
