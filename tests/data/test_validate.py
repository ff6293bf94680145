"""Dataset checks: counts, sizes, mask values, and every problem reported at once with its file."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sonofm.cli.main import main
from sonofm.data.layouts import load_index
from sonofm.data.validate import assert_valid, check_dataset
from sonofm.errors import SonofmError


def png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def image(height: int = 8, width: int = 10, value: int = 90) -> np.ndarray:
    return np.full((height, width), value, dtype=np.uint8)


def mask(height: int = 8, width: int = 10, value: int = 1) -> np.ndarray:
    ids = np.zeros((height, width), dtype=np.uint8)
    ids[2:4, 2:4] = value
    return ids


def good_segmentation(root: Path) -> Path:
    for i, (height, width) in enumerate([(8, 10), (12, 6), (9, 9)]):
        png(root / "images" / f"s{i}.png", image(height, width, 40 + i))
        png(root / "masks" / f"s{i}.png", mask(height, width, 0 if i == 2 else 1))
    return root


def test_clean_segmentation_report(tmp_path):
    report = check_dataset(load_index(good_segmentation(tmp_path)))
    assert report.problems == [] and report.warnings == []
    assert report.images == {"unsplit": 3}
    assert report.counts == {"unsplit": {"background": 3, "foreground": 2}}
    assert (report.size_min, report.size_max) == ((6, 8), (10, 12))
    assert report.mask_values == [0, 1]
    text = report.format()
    assert "layout:      flat" in text and "min 6x8, max 10x12 (W x H)" in text and "mask values: 0, 1" in text
    assert assert_valid(load_index(tmp_path)).images == {"unsplit": 3}


def make_broken_segmentation(root: Path) -> dict[str, Path]:
    """A segmentation folder with one file per kind of problem; returns the file each problem should name."""
    good_segmentation(root)
    truncated = png(root / "images" / "truncated.png", np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
    truncated.write_bytes(truncated.read_bytes()[:200])
    png(root / "masks" / "truncated.png", mask(64, 64))
    png(root / "images" / "small_mask.png", image())
    small = png(root / "masks" / "small_mask.png", mask(4, 5))
    png(root / "images" / "stray.png", image())
    stray = png(root / "masks" / "stray.png", mask(value=7))
    png(root / "images" / "colour.png", image())
    colour = png(root / "masks" / "colour.png", np.stack([mask() * 255, mask() * 0, mask() * 0], axis=2))
    lonely = png(root / "images" / "lonely.png", image())
    duplicate = png(root / "images" / "s0.jpg", image())
    return {"truncated": truncated, "size": small, "range": stray, "rgb": colour, "missing": lonely,
            "duplicate": duplicate}


def test_every_problem_is_reported_with_its_file(tmp_path):
    files = make_broken_segmentation(tmp_path)
    report = check_dataset(load_index(tmp_path))
    problems = "\n".join(report.problems)
    assert f"cannot read image {files['truncated']}: truncated or corrupt" in problems
    assert f"mask size 5x4 != image size 10x8: {files['size']}" in problems
    assert f"mask values [7] outside the class range 0..1: {files['range']}" in problems
    assert f"mask {files['rgb']} is RGB with distinct channels" in problems
    assert f"missing mask for image {files['missing']}" in problems
    assert "duplicate name 's0': " in problems and str(files["duplicate"]) in problems
    assert len(report.problems) == 6


def test_assert_valid_raises_one_line_with_count_and_first_problems(tmp_path):
    make_broken_segmentation(tmp_path)
    with pytest.raises(SonofmError) as caught:
        assert_valid(load_index(tmp_path))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"6 problems in dataset {tmp_path}: ") and "(and 3 more)" in message
    assert "sonofm data check" in message


def test_classification_label_group_and_identical_image_checks(tmp_path):
    png(tmp_path / "benign" / "b1.png", image(value=10))
    png(tmp_path / "benign" / "b2.png", image(value=20))
    png(tmp_path / "malignant" / "m1.png", image(value=10))  # same pixels as b1, other group
    (tmp_path / "labels.csv").write_text("name,class,patient\nb1,benign,p1\nb2,malignant,p2\nm1,malignant,\n")
    report = check_dataset(load_index(tmp_path))
    assert report.counts == {"unsplit": {"benign": 2, "malignant": 1}}
    assert report.problems == [
        f"labels.csv says class 'malignant' but the folder says 'benign': {tmp_path / 'benign' / 'b2.png'}",
        f"no value in group column 'patient' of labels.csv for image {tmp_path / 'malignant' / 'm1.png'}",
    ]
    assert report.warnings == [f"identical pixels in different groups: {tmp_path / 'benign' / 'b1.png'}, "
                               f"{tmp_path / 'malignant' / 'm1.png'}"]
    assert "warning: identical pixels" in report.format()


def test_labels_row_without_an_image_is_listed_by_data_check_and_stops_training(tmp_path, capsys):
    """Issue 25: a row 'ghost_image,<class>,<group>' with no such file passed `data check` silently."""
    png(tmp_path / "benign" / "b1.png", image(value=10))
    png(tmp_path / "malignant" / "m1.png", image(value=30))
    labels = tmp_path / "labels.csv"
    labels.write_text("name,class,group\nb1,benign,g1\nghost_image,benign,g9\nm1,malignant,g2\n")
    row_problem = f"{labels} line 3: row 'ghost_image' matches no image (no file with that stem)"
    assert check_dataset(load_index(tmp_path)).problems == [row_problem]
    assert main(["data", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"problem: {row_problem}" in out.splitlines() and out.rstrip().endswith("1 problems found")
    with pytest.raises(SonofmError) as refused:
        assert_valid(load_index(tmp_path))
    assert str(refused.value).startswith(f"1 problems in dataset {tmp_path}: {row_problem}; run 'sonofm data check")


def test_every_image_needs_its_row_where_the_layout_requires_one(tmp_path):
    png(tmp_path / "images" / "a.png", image(value=10))
    png(tmp_path / "images" / "b.png", image(value=20))
    png(tmp_path / "images" / "c.png", image(value=30))
    png(tmp_path / "images" / "d.png", image(value=40))
    (tmp_path / "labels.csv").write_text("name,class,patient\na,tumour,p1\nb,,p2\nd,normal,p3\n")  # flat: class per row
    assert check_dataset(load_index(tmp_path)).problems == [
        f"no class for image {tmp_path / 'images' / 'b.png'} (an empty 'class' in labels.csv)",
        f"no class for image {tmp_path / 'images' / 'c.png'} (no row in labels.csv)",
        f"no row in labels.csv for image {tmp_path / 'images' / 'c.png'} (its group column 'patient' needs one)",
    ]


def test_groups_across_layout_splits_and_counts_per_split(tmp_path):
    png(tmp_path / "train" / "a" / "x1.png", image(value=1))
    png(tmp_path / "train" / "b" / "x2.png", image(value=2))
    png(tmp_path / "test" / "a" / "x3.png", image(value=3))
    (tmp_path / "labels.csv").write_text("name,patient\nx1,p1\nx2,p2\nx3,p1\n")
    report = check_dataset(load_index(tmp_path))
    assert report.images == {"train": 2, "test": 1}
    assert report.counts == {"train": {"a": 1, "b": 1}, "test": {"a": 1}}
    assert report.problems == ["group 'p1' (column 'patient') is in several splits: test, train"]


@pytest.mark.real_data
def test_real_pocus_is_clean(shared_data):
    report = check_dataset(load_index(shared_data / "cls" / "POCUS_LUNG"))
    assert report.problems == []
    assert report.counts == {"unsplit": {"covid": 104, "pneumonia": 112, "regular": 104}}
