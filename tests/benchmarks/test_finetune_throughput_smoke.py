"""Smoke test of benchmarks/finetune_throughput.py with a tiny ViT: every figure comes out, finite and positive."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "finetune_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("finetune_throughput", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture
def keep_thread_count():
    """``measure`` sets torch's thread count for the whole process; put it back afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny_settings(bench):
    """A tiny single-thread CPU run (one thread stays fast even when other processes load the cores)."""
    settings, worker = bench.parse_settings(
        ["--model", "usfm_vit_tiny_patch16", "--img-size", "32", "--batch-size", "2", "--steps", "2",
         "--warmup", "1", "--threads", "1", "--device", "cpu", "--gemm-size", "64"]
    )
    assert worker is None
    return settings


def test_worker_args_round_trip(bench):
    settings = tiny_settings(bench)
    assert bench.parse_settings(bench.worker_args(settings, "bf16")) == (settings, "bf16")


def test_tiny_run_reports_every_figure(bench, keep_thread_count):
    settings = tiny_settings(bench)
    results = {precision: bench.measure(settings, precision) for precision in bench.PRECISIONS}
    assert results["fp32"].flops_per_step == results["bf16"].flops_per_step > 0
    lines = bench.figure_lines(settings, results)
    metrics = {(line["precision"], line["metric"]) for line in lines}
    per_precision = {"images_per_s", "step_time_s", "flops_per_step", "model_flops_per_s", "gemm_flops_per_s",
                     "matmul_efficiency", "peak_rss", "cpu_share"}
    assert metrics == {(p, m) for p in ("fp32", "bf16") for m in per_precision} | {("bf16", "bf16_speedup_vs_fp32")}
    for line in lines:
        assert line["model"] == "usfm_vit_tiny_patch16" and line["batch_size"] == 2
        assert math.isfinite(line["value"]) and line["value"] > 0
