"""Fine-tuning on real ultrasound (../shared/data via SONOFM_DATA) beats the majority-class baseline, grouped splits.
POCUS_LUNG is checked by 3-fold cross-validation (tests/workflows/test_kfold_real_data.py): one split's 12 test videos are
too few to tell; here it shows that a grouped data set's split keeps each patient group in one split."""

import csv
from pathlib import Path

import pytest

from sonofm.tasks.cls.finetune import ClsFinetuneConfig, finetune_classifier


def run_small(data: Path, out: Path, epochs: int, img_size: int) -> dict[str, float]:
    config = ClsFinetuneConfig(
        data=str(data), model="resnet18", img_size=img_size, epochs=epochs, batch_size=32, num_workers=0, progress=False,
    )
    config.optim.lr = 1e-3
    return finetune_classifier(config, out, echo=lambda _: None)


def split_rows(run: Path) -> list[dict[str, str]]:
    with (run / "split.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def split_groups(run: Path) -> dict[str, set[str]]:
    groups: dict[str, set[str]] = {}
    for row in split_rows(run):
        groups.setdefault(row["split"], set()).add(row["group"])
    return groups


def assert_no_group_straddles_splits(run: Path) -> None:
    groups = split_groups(run)
    assert groups.keys() == {"train", "val", "test"}
    assert not groups["train"] & groups["val"] and not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]


@pytest.mark.slow
@pytest.mark.real_data
def test_beats_majority_baseline_on_balanced_accuracy(shared_data, tmp_path):
    metrics = run_small(shared_data / "cls" / "BUSI", tmp_path / "run", epochs=8, img_size=64)
    # always predicting the majority class gives a balanced accuracy of 1 / number of classes = 0.333
    assert metrics["test/balanced_accuracy"] > 0.45, metrics
    assert_no_group_straddles_splits(tmp_path / "run")  # BUSI has no grouping column: each image its own group


@pytest.mark.real_data
def test_grouped_split_keeps_each_patient_group_in_one_split(shared_data, tmp_path, crash_at_epoch):
    """POCUS_LUNG's 320 video frames come from 61 patient/source groups (labels.csv column ``group``). The run writes
    its split before training, so it stops at the start of its first epoch."""
    data = shared_data / "cls" / "POCUS_LUNG"
    with (data / "labels.csv").open(newline="") as handle:
        group_of = {row["name"]: row["group"] for row in csv.DictReader(handle)}
    config = ClsFinetuneConfig(data=str(data), model="resnet18", img_size=32, group_by="group", num_workers=0,
                               progress=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune_classifier(config, tmp_path / "run", echo=lambda _: None, callbacks=[crash_at_epoch(0)])
    rows = split_rows(tmp_path / "run")
    assert len(rows) == len(group_of) == 320 and len(set(group_of.values())) == 61
    assert all(row["group"] == group_of[Path(row["name"]).stem] for row in rows)
    assert_no_group_straddles_splits(tmp_path / "run")
