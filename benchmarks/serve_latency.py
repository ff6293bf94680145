"""Serving latency of ``sonofm serve`` on loopback: a bounded load test of classification requests from concurrent
clients, and the per-click latency of A-SAM prompts once the image embedding is cached. One JSON line per figure.

The server runs in its own process (a worker of this script) with random-init models built in memory: a classifier
(``--cls-model`` at ``--img-size``, probabilities + Grad-CAM per request) and an A-SAM (``--sam-type`` with the
``--adapter`` encoder at ``--sam-img-size`` and a class prompter). Clients are threads of this process, each with its
own keep-alive connection. Weights do not change the speed.

    .venv/bin/python benchmarks/serve_latency.py
    .venv/bin/python benchmarks/serve_latency.py --requests 200 --clients 8 --clicks 30 --threads 2
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench_common sits beside this script
from bench_common import cpu_flags, figure_line, peak_rss_bytes, worker_args  # noqa: E402

CLASSES = ["benign", "malignant", "normal", "other"]
ANATOMY = ["background", "lesion", "layer"]
PROBE_EVERY_S = 0.05  # the probe's pause between two GET /api/config during the load test


@dataclass
class Settings:
    requests: int
    clients: int
    clicks: int
    cls_model: str
    img_size: int
    sam_type: str
    sam_img_size: int
    adapter: str
    image_size: int
    precision: str
    threads: int


@dataclass
class Timings:
    """Client-side latencies (s), the server's model time per request (s), and the requests that failed."""

    latencies: list[float] = field(default_factory=list)
    model_seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Client:
    """One keep-alive HTTP connection speaking the page's API."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)

    def call(self, method: str, path: str, body: bytes | dict | None = None) -> tuple[int, dict, float]:
        """``(status, JSON answer, seconds)`` of one request (JSON for a dict body)."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        headers = {"X-Sonofm": "1", "Content-Type": "application/json" if isinstance(body, dict) else
                   "application/octet-stream"}
        start = time.perf_counter()
        self.connection.request(method, path, body=data, headers=headers)
        response = self.connection.getresponse()
        answer = json.loads(response.read())
        return response.status, answer, time.perf_counter() - start


# The server worker


def build_models(settings: Settings):
    """The served classifier and A-SAM, random-init (seed 0)."""
    import torch

    from sonofm.api import LoadedModel
    from sonofm.models import create_backbone
    from sonofm.models.classifier import ImageClassifier
    from sonofm.runs.run_model import RunModel
    from sonofm.sam import AdaptedSam, build_sam
    from sonofm.serve.asam import SamRunner
    from sonofm.serve.classify import ClassifierRunner
    from sonofm.serve.models import ServedModel

    torch.manual_seed(0)
    classifier = ImageClassifier(create_backbone(settings.cls_model, img_size=settings.img_size), len(CLASSES))
    loaded = LoadedModel(RunModel(classifier.eval(), "cls", settings.img_size, CLASSES, {}))
    sam = AdaptedSam(build_sam(settings.sam_type, settings.sam_img_size, samus=settings.adapter == "samus"), ANATOMY,
                     settings.adapter)
    sam.add_prompter()
    return [ServedModel("cls", ClassifierRunner(loaded, settings.precision)),
            ServedModel("asam", SamRunner(sam.eval(), settings.precision))]


def serve_worker(settings: Settings) -> None:
    """Serve the models on a free loopback port: print ``{"url", "device"}``, serve until standard input closes,
    then print ``{"peak_rss_bytes"}``."""
    import torch

    from sonofm.engine.precision import inference_device
    from sonofm.serve.app import ServeSettings, build_app
    from sonofm.serve.server import running_server

    torch.set_num_threads(settings.threads)
    with running_server(build_app(build_models(settings), ServeSettings())) as url:
        print(json.dumps({"url": url, "device": inference_device().type}), flush=True)
        sys.stdin.read()
    print(json.dumps({"peak_rss_bytes": peak_rss_bytes()}), flush=True)


# Measuring


def phantom_png(size: int) -> bytes:
    """One phantom B-mode image of ``size`` px, as PNG bytes."""
    from sonofm.data.phantom import write_phantom_dataset

    with tempfile.TemporaryDirectory() as folder:
        root = write_phantom_dataset(folder, n_per_class=1, size=size, seed=0, frames_per_group=1)
        return sorted((root / "seg" / "images").glob("*.png"))[0].read_bytes()


def load_test(url: str, upload: str, settings: Settings) -> tuple[Timings, Timings, float]:
    """``settings.requests`` classification requests from ``settings.clients`` threads, while a probe thread times
    GET /api/config (no model work): the requests' and the probe's timings, and the wall time of the requests."""
    tickets = itertools.count()
    requests, probe = Timings(), Timings()
    lock = threading.Lock()
    done = threading.Event()

    def client() -> None:
        connection = Client(url)
        while next(tickets) < settings.requests:
            status, answer, seconds = connection.call("POST", "/api/predict", {"model": "cls", "upload": upload})
            with lock:
                requests.latencies.append(seconds)
                if status == 200:
                    requests.model_seconds.append(answer["seconds"])
                else:
                    requests.errors.append(f"{status}: {answer}")

    def probing() -> None:
        connection = Client(url)
        while not done.is_set():
            status, _, seconds = connection.call("GET", "/api/config")
            probe.latencies.append(seconds)
            if status != 200:
                probe.errors.append(str(status))
            time.sleep(PROBE_EVERY_S)

    prober = threading.Thread(target=probing)
    prober.start()
    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(settings.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    done.set()
    prober.join()
    return requests, probe, wall


def click_test(url: str, upload: str, settings: Settings, width: int, height: int) -> tuple[float, Timings]:
    """The first embedding's latency, then ``settings.clicks`` prompts one after the other (1 to 4 clicks, positive
    and negative, at seeded random pixels, then a new object): each must find the embedding cached."""
    client = Client(url)
    target = {"model": "asam", "upload": upload}
    status, answer, embedding_seconds = client.call("POST", "/api/embed", target)
    if status != 200 or answer["cached"]:
        raise RuntimeError(f"the first embedding failed or was cached: {status} {answer}")
    rng = np.random.default_rng(0)
    clicks: list[list[int]] = []
    timings = Timings()
    for number in range(settings.clicks):
        clicks = [] if number % 4 == 0 else clicks
        clicks.append([int(rng.integers(width)), int(rng.integers(height)), int(number % 4 != 3)])
        status, answer, seconds = client.call("POST", "/api/prompt", {**target, "clicks": clicks})
        timings.latencies.append(seconds)
        if status == 200 and answer["embedding_cached"]:
            timings.model_seconds.append(answer["seconds"])
        else:
            timings.errors.append(f"{status}: {str(answer)[:200]}")
    return embedding_seconds, timings


def milliseconds(values: list[float], percentile: float) -> float:
    """The percentile of ``values`` (s) in ms; NaN when every request failed (the errors figure says so)."""
    return round(float(np.percentile(values, percentile)) * 1000, 1) if values else float("nan")


def measure(settings: Settings) -> list[dict]:
    """Start the server worker, run both tests against it, stop it; the figures."""
    command = [sys.executable, os.path.abspath(__file__), *worker_args("server", settings)]
    server = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        started = json.loads(server.stdout.readline())
        client = Client(started["url"])
        image = phantom_png(settings.image_size)
        status, info, upload_seconds = client.call("POST", f"/api/upload?name={quote('phantom.png')}", image)
        if status != 200:
            raise RuntimeError(f"upload failed: {status} {info}")
        requests, probe, wall = load_test(started["url"], info["upload"], settings)
        embedding_seconds, clicks = click_test(started["url"], info["upload"], settings, info["width"],
                                               info["height"])
    finally:
        server.stdin.close()
        server.wait(timeout=120)
    finished = json.loads(server.stdout.read().strip().splitlines()[-1])
    common = {"benchmark": "serve_latency", "device": started["device"], "threads": settings.threads,
              "cpu": cpu_flags(), "precision_flag": settings.precision}
    load = {**common, "phase": "load", "requests": settings.requests, "clients": settings.clients,
            "model": settings.cls_model, "img_size": settings.img_size}
    sam = {**common, "phase": "a_sam_clicks", "clicks": settings.clicks, "sam_type": settings.sam_type,
           "adapter": settings.adapter, "img_size": settings.sam_img_size}
    precision = "fp32" if settings.precision == "32" else settings.precision
    return [
        figure_line(common, precision, "upload_latency", round(upload_seconds * 1000, 1), "ms",
                    image_px=settings.image_size),
        figure_line(load, precision, "errors", len(requests.errors) + len(probe.errors), "count"),
        figure_line(load, precision, "throughput", round(settings.requests / wall, 2), "requests/s"),
        figure_line(load, precision, "latency_p50", milliseconds(requests.latencies, 50), "ms"),
        figure_line(load, precision, "latency_p95", milliseconds(requests.latencies, 95), "ms"),
        figure_line(load, precision, "latency_max", milliseconds(requests.latencies, 100), "ms"),
        figure_line(load, precision, "model_time_p50", milliseconds(requests.model_seconds, 50), "ms"),
        figure_line(load, precision, "idle_endpoint_p50", milliseconds(probe.latencies, 50), "ms",
                    probes=len(probe.latencies)),
        figure_line(load, precision, "idle_endpoint_p95", milliseconds(probe.latencies, 95), "ms"),
        figure_line(sam, precision, "first_embedding", round(embedding_seconds * 1000, 1), "ms"),
        figure_line(sam, precision, "errors", len(clicks.errors), "count"),
        figure_line(sam, precision, "click_latency_p50", milliseconds(clicks.latencies, 50), "ms"),
        figure_line(sam, precision, "click_latency_p95", milliseconds(clicks.latencies, 95), "ms"),
        figure_line(sam, precision, "click_model_time_p50", milliseconds(clicks.model_seconds, 50), "ms"),
        figure_line(common, precision, "server_peak_rss", round(finished["peak_rss_bytes"] / 2**20, 1), "MiB"),
    ]


def parse_settings(argv: list[str] | None = None) -> tuple[Settings, str | None]:
    """Flags -> settings, and the worker job (``server``), if this is a worker."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="classification requests in the load test")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients of the load test")
    parser.add_argument("--clicks", type=int, default=30, help="A-SAM prompts after the first embedding")
    parser.add_argument("--cls-model", default="usfm_vit_base_patch16", help="the classifier's backbone")
    parser.add_argument("--img-size", type=int, default=224, help="the classifier's input size")
    parser.add_argument("--sam-type", default="vit_b", help="vit_b (default), vit_l, vit_h or vit_tiny")
    parser.add_argument("--sam-img-size", type=int, default=256, help="the A-SAM's input size (default 256)")
    parser.add_argument("--adapter", default="samus", choices=["samus", "lora", "frozen"])
    parser.add_argument("--image-size", type=int, default=256, help="side of the uploaded phantom image")
    parser.add_argument("--precision", default="32", choices=["32", "bf16", "auto"], help="as `sonofm serve`'s")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="server's torch threads")
    parser.add_argument("--worker", choices=["server"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    settings = Settings(args.requests, args.clients, args.clicks, args.cls_model, args.img_size, args.sam_type,
                        args.sam_img_size, args.adapter, args.image_size, args.precision, args.threads)
    return settings, args.worker


def main(argv: list[str] | None = None) -> None:
    settings, worker = parse_settings(argv)
    if worker:
        serve_worker(settings)
        return
    for line in measure(settings):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
