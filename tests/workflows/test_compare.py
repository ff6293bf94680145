"""`sonofm experiment compare` on phantom data: every (init, fraction, seed[, fold]) run, the same splits for every
init, paired differences as computed by hand from results.csv, resume, one-line errors, k-fold."""

import csv
import math
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

import pytest
from scipy import stats

from sonofm.cli.main import main

MODEL = ["--model", "usfm_vit_tiny_patch16", "--img-size", "32", "--set", "model_args={depth: 1}"]
CLS = ["--set", "cls.epochs=1", "--set", "cls.batch_size=16", "--set", "cls.num_workers=0",
       "--set", "cls.precision=32", "--no-progress"]


@pytest.fixture(scope="module")
def phantom(phantom_set):
    """16 images, 4 classes, each image its own group."""
    return phantom_set(n_per_class=4, size=48, seed=6, frames_per_group=1) / "cls"


def compare_argv(data: Path, tiny_vit_weights: Path, out: Path, *more: str) -> list[str]:
    return ["experiment", "compare", "--task", "cls", "--data", str(data), "--init", "scratch",
            "--init", f"enc=weights:{tiny_vit_weights}", *MODEL, "--out", str(out), *CLS, *more]


@pytest.fixture(scope="module")
def experiment(phantom, tiny_vit_weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "compare"
    argv = compare_argv(phantom, tiny_vit_weights, out, "--fractions", "0.5,1.0", "--seeds", "2")
    assert main(argv) == 0
    return out, argv


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def model_stamps(out: Path) -> dict[str, tuple[int, bytes]]:
    """(modification time, bytes) of every model file of an experiment folder, by relative path."""
    return {str(path.relative_to(out)): (path.stat().st_mtime_ns, path.read_bytes())
            for path in sorted(out.glob("**/model.safetensors"))}


def test_every_init_fraction_and_seed_ran(experiment):
    out, _ = experiment
    rows = read_csv(out / "results.csv")
    assert len(rows) == 8
    assert sorted((r["init"], r["fraction"], r["seed"]) for r in rows) == sorted(
        (init, fraction, seed) for init in ("scratch", "enc") for fraction in ("0.5", "1.0") for seed in ("0", "1"))
    assert {"test/balanced_accuracy", "test/macro_f1", "test/auroc"} <= rows[0].keys() and "fold" not in rows[0]
    for name in ("summary.csv", "paired_differences.csv", "compare.png", "metrics.json", "config.yaml"):
        assert (out / name).is_file(), name


def test_inits_share_every_split_and_only_enc_starts_from_the_weights(experiment, tiny_vit_weights):
    out, _ = experiment
    runs = out / "runs"
    for fraction in ("0.5", "1"):
        for seed in ("0", "1"):
            scratch, enc = runs / f"scratch_f{fraction}_s{seed}", runs / f"enc_f{fraction}_s{seed}"
            assert (scratch / "split.csv").read_text() == (enc / "split.csv").read_text()
            assert "weights: null" in (scratch / "config.yaml").read_text()
            assert f"weights: {tiny_vit_weights}" in (enc / "config.yaml").read_text()
    tests = {tuple(r["name"] for r in read_csv(run / "split.csv") if r["split"] == "test") for run in runs.iterdir()}
    assert len(tests) == 1  # one fixed test split for every run


def test_summary_is_mean_and_std_of_the_runs(experiment):
    out, _ = experiment
    rows = read_csv(out / "results.csv")
    for entry in read_csv(out / "summary.csv"):
        values = [float(r["test/balanced_accuracy"]) for r in rows
                  if r["init"] == entry["init"] and r["fraction"] == entry["fraction"]]
        assert float(entry["test/balanced_accuracy_mean"]) == pytest.approx(statistics.fmean(values))
        assert float(entry["test/balanced_accuracy_std"]) == pytest.approx(statistics.stdev(values))


def test_paired_differences_match_a_hand_computation(experiment):
    out, _ = experiment
    rows = read_csv(out / "results.csv")
    value = {(r["init"], r["fraction"], r["seed"]): float(r["test/balanced_accuracy"]) for r in rows}
    entries = [e for e in read_csv(out / "paired_differences.csv") if e["metric"] == "test/balanced_accuracy"]
    assert [(e["init"], e["reference"], e["fraction"]) for e in entries] == [("enc", "scratch", "0.5"),
                                                                             ("enc", "scratch", "1.0")]
    for entry in entries:
        diffs = [value["enc", entry["fraction"], seed] - value["scratch", entry["fraction"], seed] for seed in "01"]
        mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
        half = stats.t.ppf(0.975, len(diffs) - 1) * sd / math.sqrt(len(diffs))
        assert int(entry["pairs"]) == 2
        assert float(entry["mean"]) == pytest.approx(mean, abs=1e-12)
        assert float(entry["ci_low"]) == pytest.approx(mean - half, abs=1e-12)
        assert float(entry["ci_high"]) == pytest.approx(mean + half, abs=1e-12)


def test_rerun_of_a_finished_experiment_is_refused_without_overwrite(experiment, capsys):
    out, argv = experiment
    before = model_stamps(out)
    assert main(argv) == 2
    assert "is finished; pass --overwrite" in capsys.readouterr().err
    assert model_stamps(out) == before


def test_interrupted_experiment_trains_nothing_again_and_refuses_another_config(experiment, tmp_path, capsys):
    """Stopped after its runs but before its summary: the rerun keeps every run (no model file touched) and
    rebuilds the same results; a changed config is refused, naming the change."""
    original, argv = experiment
    out = tmp_path / "compare"
    shutil.copytree(original, out)
    for name in ("metrics.json", "results.csv", "summary.csv", "paired_differences.csv"):
        (out / name).unlink()
    before = model_stamps(out)
    moved = [str(out) if arg == str(original) else arg for arg in argv]
    assert main([*moved, "--seeds", "3"]) == 2
    assert "different config (seeds: 2 then, 3 now)" in capsys.readouterr().err
    assert main(moved) == 0
    assert capsys.readouterr().out.count("(finished earlier)") == 8
    assert model_stamps(out) == before and len(before) == 8
    assert read_csv(out / "results.csv") == read_csv(original / "results.csv")
    assert (out / "paired_differences.csv").read_text() == (original / "paired_differences.csv").read_text()


@pytest.mark.parametrize(("spec", "message"), [
    ("pretrained", "--init pretrained: unknown initialisation 'pretrained'; use scratch, mim:RUN, aclus:RUN or "),
    ("weights:missing.safetensors", "--init weights:missing.safetensors: missing.safetensors is not a file"),
    ("mim:no_such_run", "--init mim:no_such_run: no_such_run is not a sonofm run folder (no config.yaml)"),
    ("scratch", "--init: two initialisations are named 'scratch'; name them"),
])
def test_a_bad_init_is_one_line_and_writes_nothing(phantom, tmp_path, cli_error, spec, message):
    argv = ["experiment", "compare", "--data", str(phantom), "--init", "scratch", "--init", spec, *MODEL,
            "--out", str(tmp_path / "exp")]
    assert message in cli_error(argv)
    assert not (tmp_path / "exp").exists()


def test_kfold_compare_runs_every_init_on_the_same_grouped_folds(phantom_set, tiny_vit_weights, tmp_path):
    data = phantom_set(n_per_class=8, size=64, seed=3) / "cls"  # 32 images in 8 groups of 4
    out = tmp_path / "compare_kfold"
    assert main(compare_argv(data, tiny_vit_weights, out, "--fractions", "1.0", "--seeds", "1", "--folds", "2",
                             "--group-by", "group")) == 0
    rows = read_csv(out / "results.csv")
    assert sorted((r["init"], r["fold"]) for r in rows) == [("enc", "0"), ("enc", "1"), ("scratch", "0"),
                                                            ("scratch", "1")]
    folds_of_group = defaultdict(set)
    for row in read_csv(out / "folds.csv"):
        folds_of_group[row["group"]].add(row["fold"])
    assert len(folds_of_group) == 8 and all(len(found) == 1 for found in folds_of_group.values())
    tested = []
    for fold in (0, 1):
        scratch, enc = out / "runs" / f"scratch_f1_s0_fold{fold}", out / "runs" / f"enc_f1_s0_fold{fold}"
        assert (scratch / "split.csv").read_text() == (enc / "split.csv").read_text()
        assert f"split_file: {(out / 'splits' / f'fold_{fold}.csv').resolve()}" in (scratch / "config.yaml").read_text()
        tested += [r["name"] for r in read_csv(scratch / "split.csv") if r["split"] == "test"]
    assert len(tested) == len(set(tested)) == 32  # every image tested once
    paired = [e for e in read_csv(out / "paired_differences.csv") if e["metric"] == "test/balanced_accuracy"]
    assert [e["pairs"] for e in paired] == ["2"]  # one seed x two folds
