"""``sonofm data check|split|phantom`` through the CLI entry: exit codes, messages naming files, no tracebacks."""

import csv
import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sonofm.cli.main import main


def png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def segmentation_folder(root: Path, n: int = 4) -> Path:
    for i in range(n):
        ids = np.zeros((8, 10), np.uint8)
        ids[2:5, 2:5] = 1
        png(root / "images" / f"s{i}.png", np.full((8, 10), 30 + i, np.uint8))
        png(root / "masks" / f"s{i}.png", ids)
    return root


def classification_folder(root: Path, groups: int = 6, frames: int = 2) -> Path:
    rows = ["name,class,video"]
    for name in ("lung", "pleura"):
        for g in range(groups):
            for f in range(frames):
                png(root / name / f"{name}{g}_{f}.png", np.full((6, 6), 10 * g + f, np.uint8))
                rows.append(f"{name}{g}_{f},{name},{name}{g}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["data", *map(str, argv)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_check_clean_dataset(tmp_path, capsys):
    code, out, err = run(capsys, "check", segmentation_folder(tmp_path))
    assert code == 0 and err == ""
    assert "layout:      flat" in out and "classes:     background, foreground" in out
    assert out.rstrip().endswith("no problems found")


def test_check_lists_every_problem_then_returns_1(tmp_path, capsys):
    root = segmentation_folder(tmp_path)
    cut = root / "images" / "s0.png"
    cut.write_bytes(png(tmp_path / "big.png", np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
                    .read_bytes()[:150])
    png(root / "masks" / "s1.png", np.zeros((4, 4), np.uint8))  # size mismatch
    stray = np.zeros((8, 10), np.uint8)
    stray[0, 0], stray[1, 1] = 1, 9
    png(root / "masks" / "s2.png", stray)  # value 9 outside 0..1
    png(root / "masks" / "s3.png", np.stack([stray * 0, stray * 20, stray * 0], axis=2))  # RGB mask
    code, out, err = run(capsys, "check", root)
    assert code == 1 and err == ""
    problems = [line for line in out.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 4
    assert "s0.png: truncated or corrupt" in problems[0]
    assert "mask size 4x4 != image size 10x8" in problems[1] and "s1.png" in problems[1]
    assert "mask values [9] outside the class range 0..1" in problems[2] and "s2.png" in problems[2]
    assert "s3.png is RGB with distinct channels" in problems[3]
    assert out.rstrip().endswith("4 problems found")


def tiff_cut_inside_its_tags(path: Path) -> Path:
    """A TIFF cut 14 bytes in, inside its first tag entry: Pillow warns "Corrupt EXIF data" while refusing it."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((6, 6), 40, np.uint8)).save(buffer, format="TIFF")
    path.write_bytes(buffer.getvalue()[:14])
    return path


def test_check_on_broken_dicom_cine_and_tiff_sources_returns_1_naming_each_file_without_warnings(tmp_path, capsys,
                                                                                                 media):
    for name in ("lung", "pleura"):
        for i in range(2):
            png(tmp_path / name / f"{name}{i}.png", np.full((6, 6), 40 * i, np.uint8))
    (tmp_path / "lung" / "scan.dcm").write_bytes(b"nope" * 40)
    (tmp_path / "pleura" / "loop.mp4").write_bytes(b"nope" * 40)
    tiff = tiff_cut_inside_its_tags(tmp_path / "pleura" / "torn.tif")
    jpeg_dicom = media.dicom(tmp_path / "lung" / "cut.dcm", media.ramp(1, 8, 8, color=False), jpeg=True)
    jpeg_dicom.write_bytes(jpeg_dicom.read_bytes()[:-10])  # pydicom warns: end of file before the delimiter
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # what would reach stderr outside pytest, every time
        code, out, err = run(capsys, "check", tmp_path)
    assert code == 1 and err == "" and [str(warning.message) for warning in caught] == []
    problems = [line for line in out.splitlines() if line.startswith("problem: ")]
    assert problems[0].startswith(f"problem: cannot read DICOM {jpeg_dicom}: ")
    assert problems[1] == f"problem: cannot read DICOM {tmp_path / 'lung' / 'scan.dcm'}: not a DICOM file"
    assert problems[2].startswith(f"problem: cannot read cine {tmp_path / 'pleura' / 'loop.mp4'}: truncated or corrupt")
    assert problems[3] == f"problem: cannot read image {tiff}: not an image file or unsupported format"
    assert len(problems) == 4 and out.rstrip().endswith("4 problems found")


def test_empty_class_folder_is_an_error_naming_it(tmp_path, capsys):
    root = classification_folder(tmp_path)
    (root / "effusion").mkdir()
    code, out, err = run(capsys, "check", root)
    assert code == 2 and out == ""
    assert err == f"sonofm: error: empty class folder: {root / 'effusion'} (no image files directly inside)\n"


def test_missing_file_in_samus_list_is_an_error_naming_list_line_and_path(tmp_path, capsys):
    png(tmp_path / "DDTI" / "img" / "1.png", np.zeros((6, 6), np.uint8))
    png(tmp_path / "DDTI" / "label" / "1.png", np.zeros((6, 6), np.uint8))
    (tmp_path / "MainPatient").mkdir()
    (tmp_path / "MainPatient" / "train.txt").write_text("1/DDTI/1\n1/DDTI/2\n")
    code, _, err = run(capsys, "check", tmp_path)
    assert code == 2
    assert err.startswith(f"sonofm: error: {tmp_path / 'MainPatient' / 'train.txt'} line 2: image not found: "
                          f"{tmp_path / 'DDTI' / 'img' / '2'}")


def test_unknown_group_column_and_no_layout_are_errors(tmp_path, capsys):
    root = classification_folder(tmp_path / "cls")
    code, _, err = run(capsys, "check", root, "--group-by", "patient")
    assert code == 2 and "'patient' not in" in err and "available columns: name, class, video" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "check", tmp_path / "empty")
    assert code == 2 and "matches no dataset layout" in err and str(tmp_path / "empty") in err


def test_split_writes_grouped_folds_and_prints_a_table(tmp_path, capsys):
    root = classification_folder(tmp_path / "data")
    out_file = tmp_path / "out" / "folds.csv"
    code, out, _ = run(capsys, "split", root, "--folds", "3", "--seed", "1", "--out", out_file)
    assert code == 0
    with out_file.open() as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["name", "fold", "group", "label"]
    assert len(rows) == 24 and {r["fold"] for r in rows} == {"0", "1", "2"}
    assert rows[0] == {"name": "lung/lung0_0.png", "fold": rows[0]["fold"], "group": "lung0", "label": "0"}
    folds_of_group: dict[str, set[str]] = {}
    for row in rows:
        folds_of_group.setdefault(row["group"], set()).add(row["fold"])
    assert all(len(folds) == 1 for folds in folds_of_group.values())
    table = out.splitlines()
    assert table[0].split() == ["fold", "images", "groups", "lung", "pleura"]
    assert [line.split() for line in table[1:4]] == [[str(f), "8", "4", "4", "4"] for f in range(3)]
    assert not list(out_file.parent.glob("*.tmp"))


def test_split_with_too_few_groups_is_an_error(tmp_path, capsys):
    root = classification_folder(tmp_path, groups=2)
    code, _, err = run(capsys, "split", root, "--folds", "5", "--out", tmp_path / "f.csv")
    assert code == 2 and "only 4 groups; cannot make 5 grouped folds" in err


def test_phantom_then_check(tmp_path, capsys):
    code, out, _ = run(capsys, "phantom", "--out", tmp_path / "ph", "--n-per-class", "2", "--size", "48")
    assert code == 0 and str(tmp_path / "ph") in out
    code, out, _ = run(capsys, "check", tmp_path / "ph" / "cls")
    assert code == 0 and "groups:" in out


@pytest.mark.real_data
def test_check_real_hc18(shared_data, capsys):
    code, out, _ = run(capsys, "check", shared_data / "seg" / "HC18")
    assert code == 0 and "groups:      806 (column 'subject_prefix')" in out
