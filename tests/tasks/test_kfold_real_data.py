"""K-fold cross-validation on real lung ultrasound (POCUS_LUNG from ../shared/data via SONOFM_DATA): frames of one
video never straddle a fold's test part and its training/validation parts, and every output is written."""

import csv
import shutil
from collections import defaultdict

import pytest

from sonofm.tasks.kfold import KfoldConfig, run_kfold

FRAMES_PER_VIDEO = 2


def video_subset(source, target) -> dict[str, str]:
    """The first frames of every video (all videos, all classes) copied with their labels.csv rows; name -> video."""
    with (source / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_video = defaultdict(list)
    for row in sorted(rows, key=lambda row: row["name"]):
        by_video[row["group"]].append(row)
    kept = [row for frames in by_video.values() for row in frames[:FRAMES_PER_VIDEO]]
    for row in kept:
        (target / row["class"]).mkdir(parents=True, exist_ok=True)
        shutil.copy(source / row["class"] / f"{row['name']}.png", target / row["class"] / f"{row['name']}.png")
    with (target / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    return {row["name"]: row["group"] for row in kept}


@pytest.mark.real_data
def test_three_fold_run_on_pocus_videos(shared_data, tmp_path):
    video_of = video_subset(shared_data / "cls" / "POCUS_LUNG", tmp_path / "pocus")
    config = KfoldConfig(data=str(tmp_path / "pocus"), model="resnet18", img_size=64, epochs=1, batch_size=32,
                         folds=3, gradcam_per_class=1, num_workers=0, progress=False)
    metrics = run_kfold(config, tmp_path / "run", echo=lambda _: None)
    run = tmp_path / "run"
    tested = []
    for fold in range(3):
        with (run / f"fold_{fold}" / "split.csv").open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        videos = defaultdict(set)
        for row in rows:
            stem = row["name"].rsplit("/", 1)[-1].removesuffix(".png")
            assert row["group"] == video_of[stem]  # grouped by the video column
            videos[row["split"]].add(row["group"])
        assert not videos["test"] & (videos["train"] | videos["val"]) and not videos["train"] & videos["val"]
        tested += [row["name"] for row in rows if row["split"] == "test"]
        for name in ("model.safetensors", "metrics.json", "confusion_matrix_test.csv", "log.csv"):
            assert (run / f"fold_{fold}" / name).is_file()
    assert sorted(tested) == sorted(set(tested)) and len(tested) == len(video_of)
    for name in ("metrics.json", "folds.csv", "folds_summary.csv", "confusion_matrix_summed.png",
                 "confusion_matrix_summed.csv", "config.yaml"):
        assert (run / name).is_file(), name
    assert len(list((run / "gradcam").glob("fold_*_*.png"))) == 3 * 3  # one per class (covid, pneumonia, regular)
    for key in ("mean/accuracy", "std/accuracy", "mean/macro_f1", "pooled/accuracy", "pooled/recall/covid"):
        assert 0.0 <= metrics[key] <= 1.0, key
