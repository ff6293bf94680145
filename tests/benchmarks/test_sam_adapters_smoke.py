"""Smoke test of benchmarks/sam_adapters.py with a tiny SAM: speed figures for both adapters, the learning part on
phantom data."""

import math
from dataclasses import replace

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("sam_adapters")


def test_flags_and_worker_round_trip(bench, bench_common):
    args, settings = bench.parse_args(["--sam-type", "vit_tiny", "--img-size", "64", "--batch-size", "2", "--steps",
                                       "1", "--threads", "1", "--device", "cpu", "--gemm-size", "64"])
    assert settings.adapters == ("samus", "lora") and args.data == []
    one = replace(settings, adapters=("samus",))
    worker_args, worker_settings = bench.parse_args(bench_common.worker_args("fp32", one))
    assert worker_settings == one and worker_args.worker == "fp32"


@pytest.mark.parametrize("adapter", ["samus", "lora"])
def test_training_step_is_measured(bench, keep_thread_count, adapter):
    _, settings = bench.parse_args(["--sam-type", "vit_tiny", "--img-size", "64", "--batch-size", "2", "--steps", "1",
                                    "--threads", "1", "--device", "cpu", "--gemm-size", "64", "--adapters", adapter])
    measurement = bench.time_training_steps(settings, "fp32", bench.build_step)
    assert measurement.flops_per_step > 0 and all(t > 0 for t in measurement.step_times_s)


def test_samus_trains_more_parameters_than_lora(bench):
    samus, samus_total = bench.trained_parameters("vit_tiny", 64, "samus")
    lora, lora_total = bench.trained_parameters("vit_tiny", 64, "lora")
    assert samus > lora > 0 and samus_total > lora_total


def test_learning_part_reports_dice_before_and_after(bench, phantom_set, tmp_path):
    data = phantom_set(n_per_class=4, size=48, seed=3, frames_per_group=1) / "seg"
    lines = bench.learning_lines(data, "samus", images=16, epochs=1, lr=1e-3, work=tmp_path)
    metrics = {line["metric"]: line for line in lines}
    assert set(metrics) == {"test_point_dice", "test_box_dice", "run_seconds"}
    for kind in ("point", "box"):
        line = metrics[f"test_{kind}_dice"]
        assert 0 <= line["value"] <= 1 and 0 <= line["untrained"] <= 1 and line["adapter"] == "samus"
    assert math.isfinite(metrics["run_seconds"]["value"]) and metrics["run_seconds"]["trained_parameters"] > 0
