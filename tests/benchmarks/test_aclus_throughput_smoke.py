"""Smoke test of benchmarks/aclus_throughput.py at a tiny size: both methods give every figure, and the
reference-style baseline computes the same kind of objective (a finite loss with gradients)."""

import math

import pytest
import torch


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("aclus_throughput")


def test_tiny_run_reports_every_figure(bench, bench_common, keep_thread_count, training_figures):
    settings, worker, chosen = bench.parse_settings(["--img-size", "64", "--batch-size", "2", "--steps", "1",
                                                     "--threads", "1", "--device", "cpu", "--gemm-size", "64"])
    assert worker is None and chosen is None and settings.model == "resnet18"
    assert bench.parse_settings(bench_common.worker_args("baseline-bf16", settings)) == (
        settings, "baseline-bf16", None)
    results = {(method, precision): bench.measure(settings, f"{method}-{precision}")
               for method in bench.METHODS for precision in bench.PRECISIONS}
    assert results["baseline", "fp32"].flops_per_step > 2 * results["ours", "fp32"].flops_per_step
    lines = bench.figure_lines(settings, results)
    for method in bench.METHODS:
        metrics = {(line["precision"], line["metric"]) for line in lines if line.get("method") == method
                   and line["metric"] != "speedup_vs_baseline"}
        assert metrics == training_figures | {("bf16", "bf16_speedup_vs_fp32")}
    assert {line["precision"] for line in lines if line["metric"] == "speedup_vs_baseline"} == {"fp32", "bf16"}
    assert all(math.isfinite(line["value"]) and line["value"] > 0 for line in lines)


def test_baseline_loss_has_gradients(bench, bench_common):
    settings, _, _ = bench.parse_settings(["--img-size", "64", "--batch-size", "2", "--device", "cpu"])
    loss, _ = bench.build(settings, torch.device("cpu"), "baseline")
    value = loss()
    assert torch.isfinite(value)
    value.backward()


def test_fp32_alone_gives_its_figures_without_bf16_ratios(bench, bench_common, keep_thread_count, training_figures):
    settings, _, chosen = bench.parse_settings(["--img-size", "32", "--batch-size", "2", "--steps", "1", "--threads",
                                                "1", "--device", "cpu", "--gemm-size", "64", "--precisions", "fp32"])
    assert bench_common.resolve_precisions(chosen, "cpu") == ["fp32"]
    results = {(method, "fp32"): bench.measure(settings, f"{method}-fp32") for method in bench.METHODS}
    lines = bench.figure_lines(settings, results)
    assert {line["precision"] for line in lines} == {"fp32"}
    assert not [line for line in lines if line["metric"] == "bf16_speedup_vs_fp32"]
    assert [line["metric"] for line in lines].count("speedup_vs_baseline") == 1


def test_default_precisions_follow_native_bf16(bench_common, monkeypatch):
    from sonofm.engine import precision

    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    assert bench_common.resolve_precisions(None, "cpu") == ["fp32"]
    assert bench_common.resolve_precisions(None, "cuda") == ["fp32", "bf16"]
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    assert bench_common.resolve_precisions(None, "cpu") == ["fp32", "bf16"]
