"""The label-efficiency harness on phantom data: every run, one shared test split, summaries, resume."""

import csv
import shutil
import statistics
from pathlib import Path

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


def model_stamps(out: Path) -> dict[str, tuple[int, bytes]]:
    """(modification time, bytes) of every model file of an experiment folder, by relative path."""
    return {str(path.relative_to(out)): (path.stat().st_mtime_ns, path.read_bytes())
            for path in sorted(out.glob("**/model.safetensors"))}


def test_rerun_of_a_finished_experiment_is_refused_without_overwrite(experiment, capsys):
    out, argv = experiment
    before = model_stamps(out)
    assert main(argv) == 2
    assert "is finished; pass --overwrite" in capsys.readouterr().err
    assert model_stamps(out) == before


def test_interrupted_experiment_reuses_finished_runs(experiment, tmp_path, capsys):
    """An experiment stopped after its runs but before its summary reruns no training: the pretraining's and every
    fine-tuning run's model file stay untouched, and the results are rebuilt from the finished runs."""
    original, argv = experiment
    out = tmp_path / "label_efficiency"
    shutil.copytree(original, out)
    for name in ("metrics.json", "results.csv", "summary.csv"):
        (out / name).unlink()
    before = model_stamps(out)
    capsys.readouterr()
    assert main([str(out) if arg == str(original) else arg for arg in argv]) == 0
    printed = capsys.readouterr().out
    assert "pretraining usfm_vit_tiny_patch16" not in printed and printed.count("[8/8]") == 1
    assert model_stamps(out) == before and len(before) == 1 + 8
    assert read_csv(out / "results.csv") == read_csv(original / "results.csv")
    assert (out / "summary.csv").read_text() == (original / "summary.csv").read_text()
