"""Smoke test of benchmarks/mim_throughput.py with a tiny ViT at 32 px: every figure comes out, finite and positive."""

import json
import math

import pytest
import torch

@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("mim_throughput")


def tiny_settings(bench, *extra):
    """A tiny single-thread CPU run; 16 px blocks so that 3 of the 4 blocks of a 32 px image are hidden."""
    settings, worker = bench.parse_settings(
        ["--model", "usfm_vit_tiny_patch16", "--img-size", "32", "--batch-size", "2", "--steps", "1",
         "--warmup", "1", "--threads", "1", "--device", "cpu", "--gemm-size", "64", "--mask-patch", "16", *extra]
    )
    assert worker is None
    return settings


def test_settings(bench):
    settings = tiny_settings(bench)
    assert settings.spatial and settings.frequency and settings.mask_patch == 16
    defaults, _ = bench.parse_settings(["--device", "cpu"])
    assert (defaults.model, defaults.img_size, defaults.batch_size) == ("usfm_vit_base_patch16", 224, 16)
    assert (defaults.steps, defaults.warmup, defaults.gemm_size, defaults.mask_patch) == (10, 2, 4096, 32)
    assert not tiny_settings(bench, "--no-frequency").frequency
    assert not tiny_settings(bench, "--no-spatial").spatial


@pytest.mark.parametrize("flags", [["--no-spatial", "--no-frequency"], ["--mask-patch", "24"], ["--warmup", "0"]])
def test_bad_settings_are_refused(bench, flags):
    with pytest.raises(SystemExit):
        tiny_settings(bench, *flags)


@pytest.mark.parametrize("branch", [[], ["--no-spatial"], ["--no-frequency"]])
def test_worker_args_round_trip(bench, bench_common, branch):
    settings = tiny_settings(bench, *branch)
    assert bench.parse_settings(bench_common.worker_args("bf16", settings)) == (settings, "bf16")


def test_the_model_is_built_as_pretraining_builds_it(bench):
    model, optimizer = bench.build_model(tiny_settings(bench), torch.device("cpu"))
    assert model.encoder.shared_rel_pos_bias and model.config.mask_patch == 16
    assert all(group["lr"] == optimizer.defaults["lr"] for group in optimizer.param_groups)  # no layer decay


def test_worker_prints_one_measurement(bench, bench_common, keep_thread_count, capsys):
    settings = tiny_settings(bench, "--no-frequency")
    bench.main(bench_common.worker_args("fp32", settings))
    measurement = bench_common.TrainMeasurement(**json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert len(measurement.step_times_s) == 1 and measurement.flops_per_step > 0


def test_tiny_run_reports_every_figure(bench, keep_thread_count, training_figures):
    settings = tiny_settings(bench)
    results = {precision: bench.measure(settings, precision) for precision in bench.PRECISIONS}
    assert results["fp32"].flops_per_step == results["bf16"].flops_per_step > 0
    lines = bench.figure_lines(settings, results)
    metrics = {(line["precision"], line["metric"]) for line in lines}
    assert metrics == training_figures | {("bf16", "bf16_speedup_vs_fp32")}
    for line in lines:
        assert line["benchmark"] == "mim_throughput" and line["model"] == "usfm_vit_tiny_patch16"
        assert line["batch_size"] == 2 and line["spatial"] and line["frequency"]
        assert math.isfinite(line["value"]) and line["value"] > 0
