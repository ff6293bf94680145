"""The parts of `experiment compare` that need no training: --init specs and paired differences."""

import math

import pytest
from scipy import stats

from sonofm.atomic import atomic_write_json
from sonofm.errors import SonofmError
from sonofm.runs.config import save_config
from sonofm.tasks.aclus.pretrain import AclusPretrainConfig
from sonofm.tasks.mim.pretrain import MimPretrainConfig
from sonofm.workflows.init_specs import InitSpec, init_weights, parse_init, reference_init
from sonofm.workflows.paired_differences import mean_with_interval, paired_differences


@pytest.mark.parametrize(("text", "expected"), [
    ("scratch", ("scratch", "scratch", None)),
    ("mim:runs/mim", ("mim", "mim", "runs/mim")),
    ("usfm=weights:USFM_latest.pth", ("usfm", "weights", "USFM_latest.pth")),
    ("weights:a=b.pth", ("weights", "weights", "a=b.pth")),  # '=' after the kind belongs to the path
])
def test_init_specs_parse(text, expected):
    spec = parse_init(text)
    assert (spec.name, spec.kind, spec.source) == expected and spec.text == text


def test_the_reference_is_the_first_scratch_else_the_first():
    specs = [parse_init(text) for text in ("mim:a", "s=scratch", "scratch2=scratch")]
    assert reference_init(specs).name == "s"
    assert reference_init(specs[:1]).name == "mim"


def finished_run(path, config) -> None:
    save_config(config, path / "config.yaml")
    atomic_write_json(path / "metrics.json", {})
    (path / "model.safetensors").write_bytes(b"")


def test_a_finished_pretraining_run_gives_its_exported_backbone(tmp_path):
    finished_run(tmp_path / "mim", MimPretrainConfig(data=["x"], model="usfm_vit_tiny_patch16"))
    finished_run(tmp_path / "aclus", AclusPretrainConfig(data=["x"], model="resnet18"))
    assert init_weights(parse_init(f"mim:{tmp_path / 'mim'}")) == str(tmp_path / "mim" / "model.safetensors")
    assert init_weights(parse_init(f"aclus:{tmp_path / 'aclus'}")) == str(tmp_path / "aclus" / "model.safetensors")
    assert init_weights(InitSpec("scratch", "scratch", None, "scratch")) is None
    with pytest.raises(SonofmError, match="^--init mim:.*aclus is not a `pretrain mim` run"):
        init_weights(parse_init(f"mim:{tmp_path / 'aclus'}"))
    (tmp_path / "mim" / "metrics.json").unlink()
    with pytest.raises(SonofmError, match="^--init mim:.*mim is not finished"):
        init_weights(parse_init(f"mim:{tmp_path / 'mim'}"))


def test_mean_with_interval_is_the_t_interval_and_undefined_for_one_value():
    values = [0.1, 0.3, 0.2, 0.6]
    result = mean_with_interval(values)
    sd = math.sqrt(sum((v - 0.3) ** 2 for v in values) / 3)
    half = stats.t.ppf(0.975, 3) * sd / 2
    assert (result["pairs"], result["mean"], result["std"]) == (4, pytest.approx(0.3), pytest.approx(sd))
    assert (result["ci_low"], result["ci_high"]) == (pytest.approx(0.3 - half), pytest.approx(0.3 + half))
    one = mean_with_interval([0.25])
    assert one["mean"] == 0.25 and math.isnan(one["std"]) and math.isnan(one["ci_low"]) and math.isnan(one["ci_high"])


def test_paired_differences_pair_runs_by_seed_and_fold_and_skip_nan():
    rows = [{"init": init, "fraction": 1.0, "seed": seed, "fold": fold, "m": value}
            for init, seed, fold, value in [("scratch", 0, 0, 0.5), ("scratch", 0, 1, 0.4), ("scratch", 1, 0, 0.6),
                                            ("mim", 0, 1, 0.7), ("mim", 0, 0, 0.6), ("mim", 1, 0, math.nan)]]
    [entry] = paired_differences(rows, ("m",), "scratch")
    assert (entry["init"], entry["reference"], entry["metric"], entry["pairs"]) == ("mim", "scratch", "m", 2)
    assert entry["mean"] == pytest.approx(((0.6 - 0.5) + (0.7 - 0.4)) / 2)
