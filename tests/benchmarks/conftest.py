"""Fixtures of the benchmark smoke tests: the scripts imported as modules, torch's thread count kept."""

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="session")
def load_benchmark() -> Callable[[str], ModuleType]:
    """``load_benchmark("finetune_throughput")``: ``benchmarks/finetune_throughput.py`` imported as a module.

    The scripts' folder goes on ``sys.path``, as each script puts it there to import ``bench_common``; so
    ``load_benchmark("bench_common")`` is the very module the scripts use.
    """
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module


@pytest.fixture
def keep_thread_count() -> Iterator[None]:
    """The measurements set torch's thread count for the whole process; put it back afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def bench_common(load_benchmark) -> ModuleType:
    """``benchmarks/bench_common.py``, the helpers the scripts share (``worker_args`` among them)."""
    return load_benchmark("bench_common")


@pytest.fixture
def training_figures() -> set[tuple[str, str]]:
    """(precision, metric) of every per-precision training figure of a CPU run (``training_figure_lines``)."""
    metrics = ("images_per_s", "step_time_s", "flops_per_step", "model_flops_per_s", "gemm_flops_per_s",
               "matmul_efficiency", "peak_rss", "cpu_share")
    return {(precision, metric) for precision in ("fp32", "bf16") for metric in metrics}
