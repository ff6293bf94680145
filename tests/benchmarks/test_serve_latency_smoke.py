"""Smoke test of benchmarks/serve_latency.py with tiny models and a few requests: every figure comes out, no request
fails, the latencies are finite."""

import math

import pytest

TINY = ["--requests", "6", "--clients", "2", "--clicks", "3", "--cls-model", "usfm_vit_tiny_patch16", "--img-size",
        "32", "--sam-type", "vit_tiny", "--sam-img-size", "64", "--adapter", "lora", "--image-size", "48", "--threads",
        "1"]


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("serve_latency")


def test_settings_round_trip_to_the_server_worker(bench, bench_common):
    settings, worker = bench.parse_settings(TINY)
    assert worker is None and settings.requests == 6 and settings.adapter == "lora"
    assert bench.parse_settings(bench_common.worker_args("server", settings)) == (settings, "server")
    defaults, _ = bench.parse_settings([])
    assert (defaults.requests, defaults.clients, defaults.sam_type, defaults.adapter) == (200, 8, "vit_b", "samus")


def test_tiny_run_reports_every_figure_without_errors(bench):
    settings, _ = bench.parse_settings(TINY)
    lines = bench.measure(settings)
    figures = {(line.get("phase"), line["metric"]): line["value"] for line in lines}
    assert set(figures) == {
        (None, "upload_latency"), (None, "server_peak_rss"),
        *(("load", metric) for metric in ("errors", "throughput", "latency_p50", "latency_p95", "latency_max",
                                          "model_time_p50", "idle_endpoint_p50", "idle_endpoint_p95")),
        *(("a_sam_clicks", metric) for metric in ("first_embedding", "errors", "click_latency_p50",
                                                  "click_latency_p95", "click_model_time_p50")),
    }
    assert figures[("load", "errors")] == figures[("a_sam_clicks", "errors")] == 0
    assert all(math.isfinite(value) and value >= 0 for value in figures.values())
