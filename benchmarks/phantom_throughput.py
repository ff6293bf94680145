"""Phantom rendering throughput: images/s of ``render_phantom`` at several sizes, and of the dataset writer.

Rendering one phantom draws a subject, simulates its B-mode picture on a polar grid whose resolution is set by the
point-spread function (the same at every output size: scatterers, lateral and axial PSF, attenuation, noise, log
compression), then blurs and scan-converts it to ``size x size`` pixels. The first part does not depend on the size,
the second grows with its square; so each size after the first is also given as the time per image relative to the
first size (the baseline, measured in the same run). The dataset figures time ``write_phantom_dataset`` (what
``sonofm data phantom`` and the test fixtures run: perturbed frames, three PNGs per frame, a process pool over the
cores this process may use) against serial rendering at the same size, without files.

Rendering runs numpy and scipy in float64 on one core (their FFTs and interpolation are single-threaded); torch plays
no part.

    .venv/bin/python benchmarks/phantom_throughput.py    # 64, 128, 224 and 512 px, then a 64-image set at 128 px
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_common sits beside this script
from bench_common import time_calls  # noqa: E402
from segmentation_throughput import int_list  # noqa: E402

from sonofm.data.phantom import MIN_SIZE, PHANTOM_CLASSES, render_phantom, write_phantom_dataset  # noqa: E402

CPU = torch.device("cpu")


@dataclass
class Settings:
    """What one run measures: ``images`` timed renders (after ``warmup`` untimed ones) at each of ``sizes``, then a
    dataset of ``dataset_per_class`` images per class at ``dataset_size``."""

    sizes: tuple[int, ...]
    images: int
    warmup: int
    dataset_per_class: int
    dataset_size: int


@dataclass
class RenderMeasurement:
    """Timed renders at one size."""

    image_times_s: list[float]
    cpu_share: float


@dataclass
class DatasetMeasurement:
    """One timed ``write_phantom_dataset``."""

    images: int
    seconds: float
    cpus: int  # the cores this process may use: the writer's pool has at most as many workers


def measure_rendering(size: int, settings: Settings) -> RenderMeasurement:
    """Time ``settings.images`` renders at ``size``, the lesion kinds in turn, from a fixed seed."""
    rng = np.random.default_rng([0, size])
    kinds = itertools.cycle(PHANTOM_CLASSES)

    def render() -> None:
        render_phantom(rng, next(kinds), size)

    for _ in range(settings.warmup):
        render()
    times, cpu_share = time_calls(render, CPU, settings.images, threads=1)
    return RenderMeasurement(times, cpu_share)


def measure_dataset(settings: Settings) -> DatasetMeasurement:
    """Time writing a phantom set into a temporary folder (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="phantom_throughput_") as folder:
        start = time.perf_counter()
        out = write_phantom_dataset(Path(folder) / "set", n_per_class=settings.dataset_per_class,
                                    size=settings.dataset_size)
        seconds = time.perf_counter() - start
        images = json.loads((out / "phantom.json").read_text())["n_images"]
    return DatasetMeasurement(images, seconds, len(os.sched_getaffinity(0)))


def line(common: dict, metric: str, value: float, unit: str, **extra) -> dict:
    """One JSON-ready figure: ``common``, then metric, value, unit and any ``extra``."""
    return {**common, "metric": metric, "value": value, "unit": unit, **extra}


def rendering_lines(results: dict[int, RenderMeasurement]) -> list[dict]:
    """Per size, in the order measured: images/s, time per image (spread), CPU share; after the first size, its time
    per image relative to the first's."""
    lines = []
    mean = {size: sum(m.image_times_s) / len(m.image_times_s) for size, m in results.items()}
    base = next(iter(results))
    for size, m in results.items():
        common = {"benchmark": "phantom_throughput", "stage": "render", "img_size": size, "device": "cpu",
                  "cpus": 1}
        lines += [
            line(common, "images_per_s", round(1 / mean[size], 2), "img/s"),
            line(common, "image_time_ms", round(1000 * mean[size], 2), "ms", images=len(m.image_times_s),
                 min=round(1000 * min(m.image_times_s), 2), max=round(1000 * max(m.image_times_s), 2)),
            line(common, "cpu_share", round(m.cpu_share, 3), "ratio"),
        ]
        if size != base:
            lines.append(line(common, "time_vs_first_size", round(mean[size] / mean[base], 3), "x",
                              baseline=f"image_time_ms at {base} px"))
    return lines


def dataset_lines(size: int, dataset: DatasetMeasurement, serial: RenderMeasurement) -> list[dict]:
    """The writer's images/s, and that over serial rendering's images/s at the same size."""
    common = {"benchmark": "phantom_throughput", "stage": "write_dataset", "img_size": size, "device": "cpu",
              "cpus": dataset.cpus}
    rate = dataset.images / dataset.seconds
    serial_rate = len(serial.image_times_s) / sum(serial.image_times_s)
    return [
        line(common, "images_per_s", round(rate, 2), "img/s", images=dataset.images),
        line(common, "speedup_vs_serial_render", round(rate / serial_rate, 3), "x",
             baseline=f"render images_per_s at {size} px"),
    ]


def parse_settings(argv: list[str] | None = None) -> Settings:
    """Command-line flags -> settings."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int_list, default=(64, 128, 224, 512),
                        help="comma-separated output sizes; the first is the baseline; default 64,128,224,512")
    parser.add_argument("--images", type=int, default=40, help="timed renders per size (default 40)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed renders per size first (default 2)")
    parser.add_argument("--dataset-per-class", type=int, default=16,
                        help="images per class of the written set (4 classes; default 16); 0 skips the set")
    parser.add_argument("--dataset-size", type=int, default=128, help="image size of the written set (default 128)")
    args = parser.parse_args(argv)
    if min(*args.sizes, args.dataset_size) < MIN_SIZE:
        parser.error(f"sizes must be at least {MIN_SIZE}")
    if args.images < 1 or args.warmup < 0 or args.dataset_per_class < 0:
        parser.error("--images must be >= 1, --warmup and --dataset-per-class >= 0")
    return Settings(args.sizes, args.images, args.warmup, args.dataset_per_class, args.dataset_size)


def main(argv: list[str] | None = None) -> None:
    settings = parse_settings(argv)
    results = {}
    for size in dict.fromkeys([*settings.sizes, *([settings.dataset_size] if settings.dataset_per_class else [])]):
        print(f"# rendering at {size} px", file=sys.stderr, flush=True)
        results[size] = measure_rendering(size, settings)
    for figure in rendering_lines(results):
        print(json.dumps(figure), flush=True)
    if settings.dataset_per_class:
        print(f"# writing a phantom set at {settings.dataset_size} px", file=sys.stderr, flush=True)
        dataset = measure_dataset(settings)
        for figure in dataset_lines(settings.dataset_size, dataset, results[settings.dataset_size]):
            print(json.dumps(figure), flush=True)


if __name__ == "__main__":
    main()
