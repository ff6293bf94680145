"""Smoke test of benchmarks/segmentation_throughput.py with a tiny ViT + UPerNet: every figure comes out, finite and
positive, at two image sizes."""

import math

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("segmentation_throughput")


def tiny_settings(bench):
    """A tiny single-thread CPU run (one thread stays fast even when other processes load the cores)."""
    settings, worker = bench.parse_settings(
        ["--model", "usfm_vit_tiny_patch16", "--img-sizes", "32,64", "--batch-sizes", "2", "--steps", "1",
         "--warmup", "1", "--repeats", "2", "--threads", "1", "--device", "cpu", "--gemm-size", "64"]
    )
    assert worker is None
    return settings


def test_settings(bench):
    settings = tiny_settings(bench)
    assert settings.head == "upernet"
    assert settings.img_sizes == (32, 64) and settings.batch_sizes == (2, 2)
    assert settings.at(1).single_size() == (64, 2)
    with pytest.raises(ValueError):
        settings.single_size()
    defaults, _ = bench.parse_settings(["--device", "cpu"])
    assert defaults.img_sizes == (224, 512) and defaults.batch_sizes == (8, 2)
    assert (defaults.steps, defaults.warmup, defaults.repeats) == (3, 1, 5)


def test_worker_args_round_trip(bench, bench_common):
    settings = tiny_settings(bench)
    assert bench.parse_settings(bench_common.worker_args("infer-bf16", settings)) == (settings, ("infer", "bf16"))
    one_size = settings.at(0)
    assert bench.parse_settings(bench_common.worker_args("train-fp32", one_size)) == (one_size, ("train", "fp32"))


def test_tiny_run_reports_every_figure(bench, keep_thread_count, training_figures):
    settings = tiny_settings(bench)
    infer_metrics = {"infer_latency_ms", "infer_latency_median_ms", "infer_peak_rss", "infer_cpu_share"}
    infer_figures = {(p, m) for p in ("fp32", "bf16") for m in infer_metrics}
    ratios = {("bf16", "bf16_speedup_vs_fp32"), ("bf16", "bf16_infer_speedup_vs_fp32")}
    for index, img_size in enumerate(settings.img_sizes):
        one_size = settings.at(index)
        train = {precision: bench.measure_training(one_size, precision) for precision in bench.PRECISIONS}
        infer = {precision: bench.measure_inference(one_size, precision) for precision in bench.PRECISIONS}
        assert train["fp32"].flops_per_step == train["bf16"].flops_per_step > 0
        lines = bench.figure_lines(one_size, train, infer)
        metrics = {(line["precision"], line["metric"]) for line in lines}
        assert metrics == training_figures | infer_figures | ratios
        for line in lines:
            assert line["model"] == "usfm_vit_tiny_patch16" and line["head"] == "upernet"
            assert line["img_size"] == img_size
            assert line["batch_size"] == (1 if "infer" in line["metric"] else 2)
            assert math.isfinite(line["value"]) and line["value"] > 0
