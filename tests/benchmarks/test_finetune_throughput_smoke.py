"""Smoke test of benchmarks/finetune_throughput.py with a tiny ViT: every figure comes out, finite and positive."""

import math

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("finetune_throughput")


def tiny_settings(bench):
    """A tiny single-thread CPU run (one thread stays fast even when other processes load the cores)."""
    settings, worker = bench.parse_settings(
        ["--model", "usfm_vit_tiny_patch16", "--img-size", "32", "--batch-size", "2", "--steps", "2",
         "--warmup", "1", "--threads", "1", "--device", "cpu", "--gemm-size", "64"]
    )
    assert worker is None
    return settings


def test_worker_args_round_trip(bench, bench_common):
    settings = tiny_settings(bench)
    assert bench.parse_settings(bench_common.worker_args("bf16", settings)) == (settings, "bf16")


def test_tiny_run_reports_every_figure(bench, keep_thread_count, training_figures):
    settings = tiny_settings(bench)
    results = {precision: bench.measure(settings, precision) for precision in bench.PRECISIONS}
    assert results["fp32"].flops_per_step == results["bf16"].flops_per_step > 0
    lines = bench.figure_lines(settings, results)
    metrics = {(line["precision"], line["metric"]) for line in lines}
    assert metrics == training_figures | {("bf16", "bf16_speedup_vs_fp32")}
    for line in lines:
        assert line["model"] == "usfm_vit_tiny_patch16" and line["batch_size"] == 2
        assert math.isfinite(line["value"]) and line["value"] > 0
