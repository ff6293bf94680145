"""Smoke test of benchmarks/automask_throughput.py with a tiny SAM: every figure comes out, finite and positive."""

import math

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("automask_throughput")


def tiny_settings(bench):
    settings, worker = bench.parse_settings(
        ["--sam-type", "vit_tiny", "--img-sizes", "64,128", "--batch-sizes", "2", "--steps", "1", "--warmup", "1",
         "--threads", "1", "--device", "cpu", "--gemm-size", "64"])
    assert worker is None
    return settings


def test_settings_and_defaults(bench, bench_common):
    settings = tiny_settings(bench)
    assert settings.img_sizes == (64, 128) and settings.batch_sizes == (2, 2)
    one_run = settings.at(1, "samus")
    assert bench.parse_settings(bench_common.worker_args("bf16", one_run)) == (one_run, "bf16")
    defaults, _ = bench.parse_settings(["--device", "cpu"])
    assert defaults.sam_type == "vit_b" and defaults.img_sizes == (256, 1024) and defaults.batch_sizes == (4, 1)
    assert defaults.adapters == ("samus", "lora")


@pytest.mark.parametrize("adapter", ["samus", "lora"])
def test_tiny_run_reports_every_figure(bench, keep_thread_count, adapter):
    settings = tiny_settings(bench).at(0, adapter)
    results = {precision: bench.measure(settings, precision) for precision in bench.PRECISIONS}
    assert results["fp32"].flops_per_batch == results["bf16"].flops_per_batch > 0
    lines = bench.figure_lines(settings, results)
    metrics = {(line["precision"], line["metric"]) for line in lines}
    per_precision = {"images_per_s", "batch_time_s", "flops_per_image", "matmul_efficiency", "peak_rss", "cpu_share"}
    assert metrics == {(p, m) for p in ("fp32", "bf16") for m in per_precision} | {("bf16", "bf16_speedup_vs_fp32")}
    for line in lines:
        assert line["sam_type"] == "vit_tiny" and line["img_size"] == 64 and line["batch_size"] == 2
        assert line["adapter"] == adapter
        assert math.isfinite(line["value"]) and line["value"] > 0
