"""Smoke test of benchmarks/phantom_throughput.py at tiny sizes: every figure comes out, finite and positive, and the
written set is timed and removed."""

import json
import math

import pytest


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("phantom_throughput")


def test_settings_and_defaults(bench):
    defaults = bench.parse_settings([])
    assert (defaults.sizes, defaults.images, defaults.warmup) == ((64, 128, 224, 512), 40, 2)
    assert (defaults.dataset_per_class, defaults.dataset_size) == (16, 128)
    with pytest.raises(SystemExit):
        bench.parse_settings(["--sizes", "16,64"])
    with pytest.raises(SystemExit):
        bench.parse_settings(["--images", "0"])


def test_tiny_run_prints_every_figure(bench, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the written set goes here, and must be gone afterwards
    monkeypatch.setattr(bench.tempfile, "tempdir", None)
    bench.main(["--sizes", "32,48", "--images", "2", "--warmup", "1", "--dataset-per-class", "1",
                "--dataset-size", "40"])
    lines = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    figures = [(line["stage"], line["img_size"], line["metric"]) for line in lines]
    per_size = ("images_per_s", "image_time_ms", "cpu_share")
    render = [("render", size, metric) for size in (32, 48, 40) for metric in per_size]  # 40: the set's baseline
    relative = [("render", size, "time_vs_first_size") for size in (48, 40)]
    written = [("write_dataset", 40, "images_per_s"), ("write_dataset", 40, "speedup_vs_serial_render")]
    assert sorted(figures) == sorted(render + relative + written)
    assert all(line["benchmark"] == "phantom_throughput" and math.isfinite(line["value"]) and line["value"] > 0
               for line in lines)
    by_figure = {(line["stage"], line["img_size"], line["metric"]): line for line in lines}
    assert by_figure["render", 32, "image_time_ms"]["images"] == 2
    assert by_figure["render", 48, "time_vs_first_size"]["baseline"] == "image_time_ms at 32 px"
    assert by_figure["write_dataset", 40, "images_per_s"]["images"] == 4  # 1 image of each of the 4 classes
    assert not list(tmp_path.iterdir())
