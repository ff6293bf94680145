"""Layout detection: USFM split folders, flat images/masks, class folders, SAMUS lists, grouping, class counts."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sonofm.data.frames import FrameSampling, set_default_sampling
from sonofm.data.layouts import load_index
from sonofm.errors import SonofmError

IMAGE = np.full((8, 10), 90, dtype=np.uint8)


def png(path: Path, array: np.ndarray = IMAGE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def mask(value: int = 1, fill: int = 0) -> np.ndarray:
    ids = np.full((8, 10), fill, dtype=np.uint8)
    ids[2:5, 3:6] = value
    return ids


def write_csv(path: Path, text: str) -> None:
    path.write_text(text.strip() + "\n")


def test_usfm_segmentation_with_misspelled_training_set(tmp_path):
    for split, names in {"trainning_set": ["a", "b"], "val_set": ["c"], "test_set": ["d"]}.items():
        for name in names:
            png(tmp_path / split / "image" / f"{name}.png")
            png(tmp_path / split / "mask" / f"{name}.png", mask(255))
    png(tmp_path / "test_set" / "image" / "sub" / "e.bmp")  # nested, mask with another extension
    png(tmp_path / "test_set" / "mask" / "sub" / "e.png", mask())
    index = load_index(tmp_path)
    assert (index.layout, index.task, index.classes) == ("usfm", "seg", ["background", "foreground"])
    assert [(s.name, s.split) for s in index.samples] == [
        ("a", "train"), ("b", "train"), ("c", "val"), ("d", "test"), ("e", "test")]
    assert index.samples[-1].mask == tmp_path / "test_set" / "mask" / "sub" / "e.png"
    assert index.has_splits and index.group_column is None
    assert len({s.group for s in index.samples}) == 5


def test_usfm_classification_classes_are_the_union_of_split_folders(tmp_path):
    png(tmp_path / "train" / "benign" / "1.png")
    png(tmp_path / "train" / "malignant" / "2.png")
    png(tmp_path / "train" / "normal" / "3.png")
    png(tmp_path / "test" / "malignant" / "4.png")
    index = load_index(tmp_path, task="cls")
    assert index.classes == ["benign", "malignant", "normal"]
    assert [(s.name, s.label, s.split) for s in index.samples] == [
        ("1", 0, "train"), ("2", 1, "train"), ("3", 2, "train"), ("4", 1, "test")]


def test_usfm_two_spellings_of_one_split_are_refused(tmp_path):
    png(tmp_path / "train" / "a" / "1.png")
    png(tmp_path / "training_set" / "a" / "1.png")
    with pytest.raises(SonofmError, match="two train folders"):
        load_index(tmp_path)


def test_flat_segmentation_with_labels_and_group_column(tmp_path):
    for name in ("x1", "x2", "y1"):
        png(tmp_path / "images" / f"{name}.png")
        png(tmp_path / "masks" / f"{name}.png", mask())
    write_csv(tmp_path / "labels.csv", "name,patient,site\nx1,p1,a\nx2,p1,b\ny1,p2,a")
    index = load_index(tmp_path)
    assert (index.layout, index.task, index.group_column) == ("flat", "seg", "patient")
    assert [s.group for s in index.samples] == ["p1", "p1", "p2"]
    assert index.samples[0].meta == {"name": "x1", "patient": "p1", "site": "a"}
    assert [s.group for s in load_index(tmp_path, group_by="site").samples] == ["a", "b", "a"]
    with pytest.raises(SonofmError, match=r"'scanner' not in .*labels\.csv; available columns: name, patient, site"):
        load_index(tmp_path, group_by="scanner")


def test_flat_classification_from_class_column(tmp_path):
    for name in ("a", "b", "c"):
        png(tmp_path / "images" / f"{name}.png")
    write_csv(tmp_path / "labels.csv", "name,class\na,tumour\nb,normal\nc,tumour")
    index = load_index(tmp_path)
    assert (index.task, index.classes, [s.label for s in index.samples]) == ("cls", ["normal", "tumour"], [1, 0, 1])
    with pytest.raises(SonofmError, match="segmentation needs a masks/ folder"):
        load_index(tmp_path, task="seg")


def test_flat_images_without_masks_or_classes_is_refused(tmp_path):
    png(tmp_path / "images" / "a.png")
    with pytest.raises(SonofmError, match="no masks/ folder and no labels.csv with a 'class' column"):
        load_index(tmp_path)


def test_class_folders_with_group_column_and_ignored_files(tmp_path):
    png(tmp_path / "covid" / "c1.png")
    png(tmp_path / "covid" / "c2.PNG")
    png(tmp_path / "regular" / "r1.jpg")
    (tmp_path / "regular" / "notes.txt").write_text("not an image")
    png(tmp_path / ".cache" / "junk.png")
    write_csv(tmp_path / "labels.csv", "name,class,source_file,group\nc1,covid,v1,g1\nc2,covid,v2,g1\nr1,regular,v3,g2")
    index = load_index(tmp_path)
    assert (index.layout, index.task, index.classes, index.group_column) == (
        "class_folders", "cls", ["covid", "regular"], "group")
    assert [(s.name, s.label, s.group) for s in index.samples] == [("c1", 0, "g1"), ("c2", 0, "g1"), ("r1", 1, "g2")]
    with pytest.raises(SonofmError, match="not segmentation"):
        load_index(tmp_path, task="seg")


def test_labels_rows_are_each_tied_to_one_image(tmp_path, media):
    png(tmp_path / "a" / "x1.png")
    png(tmp_path / "b" / "y1.png")
    media.video(tmp_path / "b" / "clip.gif", media.ramp(3))
    labels = tmp_path / "labels.csv"
    write_csv(labels, "name,class,group\nx1,a,g1\nghost,a,g2\n,b,g3\ny1,b,g3\nx1,a,g4\nclip_f0001,b,g5\n"
                      "clip_f0009,b,g5\nclip,b,g5\n,,")
    index = load_index(tmp_path)
    assert index.row_problems == [
        f"{labels} line 4: row without a 'name' (the image file stem)",
        f"{labels} line 6: name 'x1' repeats line 2",
        f"{labels} line 3: row 'ghost' matches no image (no file with that stem)",
        f"{labels} line 8: row 'clip_f0009' matches no image (no file with that stem)",  # the clip has 3 frames
    ]  # a frame's row and the clip's own row match; a trailing row of empty cells is no row
    set_default_sampling(FrameSampling(step=2))
    try:
        assert load_index(tmp_path).row_problems == index.row_problems  # clip_f0001, not sampled now, still matches
    finally:
        set_default_sampling(FrameSampling())
    assert {s.name: s.group for s in index.samples}["x1"] == "g4"  # the last of repeated rows wins, as before


def test_empty_class_folder_and_single_class_are_refused(tmp_path):
    png(tmp_path / "a" / "1.png")
    with pytest.raises(SonofmError, match="classification needs at least two"):
        load_index(tmp_path)
    (tmp_path / "b").mkdir()
    with pytest.raises(SonofmError, match=f"empty class folder: {tmp_path / 'b'}"):
        load_index(tmp_path)


def test_folder_matching_no_layout(tmp_path):
    (tmp_path / "BUSI" / "benign").mkdir(parents=True)
    with pytest.raises(SonofmError, match="matches no dataset layout; accepted layouts"):
        load_index(tmp_path)
    with pytest.raises(SonofmError, match="dataset folder not found"):
        load_index(tmp_path / "missing")


def test_segmentation_classes_inferred_from_masks(tmp_path):
    png(tmp_path / "images" / "a.png")
    png(tmp_path / "masks" / "a.png", mask(2))
    png(tmp_path / "images" / "b.png")
    png(tmp_path / "masks" / "b.png", mask(1))
    assert load_index(tmp_path).classes == ["background", "class_1", "class_2"]
    png(tmp_path / "masks" / "a.png", mask(7))  # a stray id after a gap: stays binary, validation flags it
    assert load_index(tmp_path).classes == ["background", "foreground"]
    assert load_index(tmp_path, num_classes=8).num_classes == 8


def write_samus(root: Path, train: str, test: str) -> None:
    for name in ("a", "b", "c"):
        png(root / "DS" / "img" / f"{name}.png")
        png(root / "DS" / "label" / f"{name}.png", mask(2 if name == "a" else 1))
    (root / "MainPatient").mkdir()
    (root / "MainPatient" / "train.txt").write_text(train)
    (root / "MainPatient" / "test.txt").write_text(test)


def test_samus_lists_with_and_without_class_ids(tmp_path):
    write_samus(tmp_path, "1/DS/a\n2/DS/a\n1/DS/b.png\n", "DS/c\n")
    index = load_index(tmp_path)
    assert (index.layout, index.task) == ("samus", "seg")
    assert index.classes == ["background", "class_1", "class_2"]
    assert [(s.name, s.split) for s in index.samples] == [("a", "train"), ("b", "train"), ("c", "test")]
    assert index.samples[0].mask == tmp_path / "DS" / "label" / "a.png"


def test_samus_without_class_ids_is_binary_unless_class_json_says_more(tmp_path):
    write_samus(tmp_path, "DS/a\nDS/b\n", "DS/c\n")
    assert load_index(tmp_path).classes == ["background", "foreground"]
    (tmp_path / "MainPatient" / "class.json").write_text('{"DS": 4}')
    assert load_index(tmp_path).num_classes == 4


def test_samus_missing_file_names_list_line_and_path(tmp_path):
    write_samus(tmp_path, "1/DS/a\n1/DS/ghost\n", "DS/c\n")
    with pytest.raises(SonofmError, match=r"train\.txt line 2: image not found: .*DS/img/ghost"):
        load_index(tmp_path)


def test_samus_lists_inside_the_dataset_folder(tmp_path):
    root = tmp_path / "DS"
    for name in ("a", "b"):
        png(root / "img" / f"{name}.png")
        png(root / "label" / f"{name}.png", mask())
    (root / "MainPatient").mkdir()
    (root / "MainPatient" / "train.txt").write_text("DS/a\nDS/b\n")
    assert [s.name for s in load_index(root).samples] == ["a", "b"]


def test_order_is_deterministic(tmp_path):
    for name in ("c", "a", "b"):
        png(tmp_path / "x" / f"{name}.png")
        png(tmp_path / "y" / f"{name}.png")
    first, second = load_index(tmp_path), load_index(tmp_path)
    assert [s.image for s in first.samples] == [s.image for s in second.samples]
    assert [s.name for s in first.samples] == ["a", "b", "c", "a", "b", "c"]


@pytest.mark.real_data
@pytest.mark.parametrize(
    ("dataset", "layout", "task", "column", "images", "groups"),
    [
        ("cls/BUSI", "class_folders", "cls", None, 780, 780),
        ("cls/POCUS_LUNG", "class_folders", "cls", "group", 320, 61),
        ("seg/HC18", "flat", "seg", "subject_prefix", 999, 806),
        ("seg/CCA_CAROTID", "flat", "seg", "acquisition_id", 543, 15),
    ],
)
def test_real_datasets_are_detected_and_grouped(shared_data, dataset, layout, task, column, images, groups):
    index = load_index(shared_data / dataset)
    assert (index.layout, index.task, index.group_column) == (layout, task, column)
    assert len(index.samples) == images and len({s.group for s in index.samples}) == groups
    if task == "seg":
        assert index.classes == ["background", "foreground"]
        assert all(s.mask is not None and s.mask.is_file() for s in index.samples)
