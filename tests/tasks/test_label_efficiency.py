"""The label-efficiency harness on phantom data: every run, one shared test split, summaries, resume."""

import csv
import statistics

import pytest

from sonofm.cli.main import main
from sonofm.data.phantom import write_phantom_dataset


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = write_phantom_dataset(tmp_path_factory.mktemp("phantom"), n_per_class=10, size=64, seed=4,
                                 frames_per_group=1)
    out = tmp_path_factory.mktemp("exp") / "label_efficiency"
    argv = ["experiment", "label-efficiency", "--task", "cls", "--data", str(root / "cls"),
            "--pretrain-data", str(root / "seg" / "images"), "--model", "usfm_vit_tiny_patch16", "--img-size", "64",
            "--fractions", "0.5,1.0", "--seeds", "2", "--out", str(out), "--no-progress",
            "--set", "model_args={depth: 2}", "--set", "pretrain.epochs=2", "--set", "pretrain.batch_size=16",
            "--set", "pretrain.num_workers=0", "--set", "cls.epochs=1", "--set", "cls.batch_size=16",
            "--set", "cls.num_workers=0"]
    assert main(argv) == 0
    return out, argv


def read_csv(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_init_fraction_and_seed_ran(experiment):
    out, _ = experiment
    rows = read_csv(out / "results.csv")
    assert sorted((r["init"], r["fraction"], r["seed"]) for r in rows) == sorted(
        (init, fraction, seed) for init in ("pretrained", "scratch") for fraction in ("0.5", "1.0")
        for seed in ("0", "1"))
    for name in ("summary.csv", "summary.md", "label_efficiency.png", "metrics.json", "pretrain/model.safetensors"):
        assert (out / name).is_file(), name


def test_all_runs_share_one_test_split_and_pretrained_runs_use_the_weights(experiment):
    out, _ = experiment
    tests = set()
    for run in sorted((out / "runs").iterdir()):
        tests.add(tuple(sorted(r["name"] for r in read_csv(run / "split.csv") if r["split"] == "test")))
        config = (run / "config.yaml").read_text()
        uses_weights = "pretrain/model.safetensors" in config
        assert uses_weights == run.name.startswith("pretrained"), run.name
    assert len(tests) == 1
    small = {r["name"] for r in read_csv(out / "runs" / "scratch_f0.5_s0" / "split.csv") if r["split"] == "train"}
    full = {r["name"] for r in read_csv(out / "runs" / "scratch_f1_s0" / "split.csv") if r["split"] == "train"}
    assert small < full


def test_summary_is_mean_and_std_of_the_runs(experiment):
    out, _ = experiment
    rows = read_csv(out / "results.csv")
    summary = read_csv(out / "summary.csv")
    for entry in summary:
        values = [float(r["test/balanced_accuracy"]) for r in rows
                  if r["init"] == entry["init"] and r["fraction"] == entry["fraction"]]
        assert float(entry["test/balanced_accuracy_mean"]) == pytest.approx(statistics.fmean(values))
        assert float(entry["test/balanced_accuracy_std"]) == pytest.approx(statistics.stdev(values))
    assert "± " in (out / "summary.md").read_text()


def test_rerun_with_overwrite_absent_reuses_finished_runs(experiment, capsys):
    out, argv = experiment
    assert main(argv) == 2  # the experiment is finished
    assert "is finished" in capsys.readouterr().err
