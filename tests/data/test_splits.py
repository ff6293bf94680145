"""Grouped stratified splits, train fractions, k-fold assignments and split files."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sonofm.data.layouts import load_index
from sonofm.data.records import DatasetIndex, Sample
from sonofm.data.splits import (
    kfold_assignments,
    load_folds,
    load_split,
    save_folds,
    save_split,
    split_samples,
    stratum,
    train_fraction,
)
from sonofm.errors import SonofmError

CLASSES = ["a", "b", "c"]


def grouped_index(root: Path = Path("/data"), groups_per_class: int = 20, frames: int = 3) -> DatasetIndex:
    """3 classes x ``groups_per_class`` groups x ``frames`` frames (files need not exist)."""
    samples = [
        Sample(image=root / name / f"{name}{g:02d}_f{f}.png", label=label, group=f"{name}{g:02d}")
        for label, name in enumerate(CLASSES)
        for g in range(groups_per_class)
        for f in range(frames)
    ]
    return DatasetIndex(root=root, layout="class_folders", task="cls", samples=samples, classes=CLASSES,
                        group_column="group")


def groups_of(samples: list[Sample]) -> set[str]:
    return {s.group for s in samples}


def assert_no_shared_groups(splits: dict[str, list[Sample]]) -> None:
    names = list(splits)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            assert not groups_of(splits[first]) & groups_of(splits[second]), (first, second)


def test_grouped_split_keeps_groups_whole_and_ratios_per_class():
    index = grouped_index()
    splits = split_samples(index, (0.7, 0.1, 0.2), seed=0)
    assert_no_shared_groups(splits)
    assert sum(map(len, splits.values())) == len(index.samples)
    for split, groups_per_class in {"train": 14, "val": 2, "test": 4}.items():
        assert Counter(s.label for s in splits[split]) == {0: 3 * groups_per_class, 1: 3 * groups_per_class,
                                                          2: 3 * groups_per_class}
    assert split_samples(index, seed=0) == splits
    assert split_samples(index, seed=1)["test"] != splits["test"]


def test_split_keeps_index_order_and_zero_ratio_gives_empty_split():
    index = grouped_index()
    splits = split_samples(index, (0.8, 0.2, 0.0))
    assert splits["test"] == []
    order = {s.image: i for i, s in enumerate(index.samples)}
    assert [order[s.image] for s in splits["train"]] == sorted(order[s.image] for s in splits["train"])


@pytest.mark.parametrize("ratios", [(0.5, 0.5), (0.7, 0.2, 0.2), (0.0, 0.5, 0.5), (1.2, -0.1, -0.1)])
def test_bad_ratios_are_refused(ratios):
    with pytest.raises(SonofmError, match="split ratios"):
        split_samples(grouped_index(), ratios)


def test_layout_splits_are_kept_and_missing_val_is_carved_from_train():
    base = grouped_index(groups_per_class=10)
    samples = [Sample(s.image, s.label, group=s.group, split="test" if s.group.endswith("09") else "train")
               for s in base.samples]
    index = DatasetIndex(base.root, "usfm", "cls", samples, CLASSES, "group")
    splits = split_samples(index, (0.7, 0.1, 0.2))
    assert splits["test"] == [s for s in samples if s.split == "test"]
    assert len(splits["val"]) == 9 and {s.label for s in splits["val"]} == {0, 1, 2}  # 1 group of 3 per class
    assert_no_shared_groups(splits)
    assert sum(map(len, splits.values())) == len(samples)


def test_train_fraction_is_grouped_stratified_and_nested():
    train = grouped_index(groups_per_class=20).samples
    quarter = train_fraction(train, 0.25, seed=3)
    assert Counter(s.label for s in quarter) == {0: 15, 1: 15, 2: 15}
    assert all(Counter(s.group for s in quarter)[g] == 3 for g in groups_of(quarter))
    tenth, half = train_fraction(train, 0.1, seed=3), train_fraction(train, 0.5, seed=3)
    assert set(map(id, tenth)) <= set(map(id, quarter)) <= set(map(id, half))
    tiny = train_fraction(train, 0.001, seed=3)
    assert Counter(s.label for s in tiny) == {0: 3, 1: 3, 2: 3}  # one group per class at least
    assert train_fraction(train, 1.0) == train
    with pytest.raises(SonofmError, match="train fraction"):
        train_fraction(train, 0.0)


def test_kfold_assignments_are_grouped_stratified_and_seeded():
    samples = grouped_index(groups_per_class=10).samples
    folds = kfold_assignments(samples, 5, seed=0)
    assert sorted(set(folds)) == [0, 1, 2, 3, 4]
    fold_of_group: dict[str, set[int]] = {}
    for sample, fold in zip(samples, folds):
        fold_of_group.setdefault(sample.group, set()).add(fold)
    assert all(len(f) == 1 for f in fold_of_group.values())
    for fold in range(5):
        assert Counter(s.label for s, f in zip(samples, folds) if f == fold) == {0: 6, 1: 6, 2: 6}
    assert kfold_assignments(samples, 5, seed=0) == folds
    with pytest.raises(SonofmError, match="only 30 groups; cannot make 31"):
        kfold_assignments(samples, 31)


def test_segmentation_stratifies_on_empty_masks(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(20):
        ids = np.zeros((6, 6), dtype=np.uint8)
        if i % 4:
            ids[1:3, 1:3] = 1
        Image.fromarray(np.full((6, 6), 50, np.uint8)).save(tmp_path / "images" / f"{i:02d}.png")
        Image.fromarray(ids).save(tmp_path / "masks" / f"{i:02d}.png")
    index = load_index(tmp_path)
    assert Counter(stratum(s) for s in index.samples) == {"empty": 5, "foreground": 15}
    splits = split_samples(index, (0.6, 0.2, 0.2))
    assert [Counter(stratum(s) for s in splits[k])["empty"] for k in ("train", "val", "test")] == [3, 1, 1]


def test_split_file_round_trip_survives_a_moved_dataset(tmp_path):
    index = grouped_index(root=tmp_path / "old")
    splits = split_samples(index)
    path = tmp_path / "run" / "split.csv"
    save_split(splits, path)
    lines = path.read_text().splitlines()
    assert lines[0] == "name,split,group,label"
    assert lines[1].split(",")[1:] == ["train", splits["train"][0].group, str(splits["train"][0].label)]
    assert lines[1].split(",")[0] == splits["train"][0].image.relative_to(tmp_path / "old").as_posix()
    assert not list(path.parent.glob("*.tmp"))
    moved = grouped_index(root=tmp_path / "new")
    loaded = load_split(path, moved)
    assert {k: [s.name for s in v] for k, v in loaded.items()} == {k: [s.name for s in v] for k, v in splits.items()}


def test_loading_a_split_naming_missing_images_is_refused(tmp_path):
    index = grouped_index(root=tmp_path)
    path = tmp_path / "split.csv"
    save_split(split_samples(index), path)
    fewer = DatasetIndex(tmp_path, "class_folders", "cls", index.samples[3:], CLASSES, "group")
    with pytest.raises(SonofmError, match=r"split\.csv names 3 images missing from .*a/a00_f0\.png"):
        load_split(path, fewer)


def test_fold_file_round_trip(tmp_path):
    index = grouped_index(root=tmp_path, groups_per_class=5)
    folds = kfold_assignments(index.samples, 5, seed=2)
    save_folds(index, folds, tmp_path / "folds.csv")
    assert (tmp_path / "folds.csv").read_text().splitlines()[0] == "name,fold,group,label"
    assert load_folds(tmp_path / "folds.csv", index) == folds


@pytest.mark.real_data
@pytest.mark.parametrize("dataset", ["cls/BUSI", "cls/POCUS_LUNG", "seg/HC18", "seg/CCA_CAROTID"])
def test_real_data_splits_are_grouped_and_keep_ratios(shared_data, dataset):
    index = load_index(shared_data / dataset)
    splits = split_samples(index, (0.7, 0.1, 0.2), seed=0)
    assert_no_shared_groups(splits)
    total = len(index.samples)
    tolerance = 0.12 if dataset == "seg/CCA_CAROTID" else 0.05  # CCA: 15 acquisitions only
    for split, ratio in zip(("train", "val", "test"), (0.7, 0.1, 0.2)):
        assert abs(len(splits[split]) / total - ratio) <= tolerance, split
    subset = train_fraction(splits["train"], 0.1, seed=0)
    assert {stratum(s) for s in subset} == {stratum(s) for s in splits["train"]}
    assert len(subset) < len(splits["train"])
