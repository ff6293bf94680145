"""Fixtures shared by all test folders."""

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from sonofm.cli.main import main
from sonofm.data.phantom import write_phantom_dataset
from sonofm.models import create_backbone
from sonofm.models.weights import save_backbone_weights


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist the workers share the cores: each gets its share of torch threads (oversubscribed OpenMP
    threads spin and slow every worker down)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // workers))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` run first: pytest-xdist (``./run.sh test``, ``--dist loadscope --no-loadscope-reorder``)
    hands out modules in this order, so the long ones start at once and the workers finish together."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder named by ``SONOFM_DATA`` (e.g. ../shared/data); skips the test when it is unavailable,
    or fails it when ``SONOFM_REQUIRE_DATA=1`` (CI with the data beside the checkout: a lost folder must not pass)."""
    value = os.environ.get("SONOFM_DATA")
    folder = Path(value) if value else None
    readable = folder is not None and all(os.access(folder / part, os.R_OK | os.X_OK) for part in ("cls", "seg"))
    if not readable:
        message = f"real data not available (SONOFM_DATA={value!r}; set it to the shared data folder)"
        if os.environ.get("SONOFM_REQUIRE_DATA") == "1":
            pytest.fail(message + " and SONOFM_REQUIRE_DATA=1 requires it")
        pytest.skip(message)
    return folder


@pytest.fixture(scope="session")
def tiny_vit_weights(tmp_path_factory) -> Path:
    """A random ``usfm_vit_tiny_patch16`` (32 px, depth 1; seed 7) saved as sonofm backbone weights."""
    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("encoder") / "encoder.safetensors"
    save_backbone_weights(create_backbone("usfm_vit_tiny_patch16", img_size=32, depth=1), path)
    return path


@pytest.fixture(scope="session")
def phantom_set(tmp_path_factory) -> Callable[..., Path]:
    """``phantom_set(n_per_class=..., size=..., seed=..., frames_per_group=...)``: the root of the phantom data set
    with those settings, written once per session (per xdist worker) and shared by every module asking for the same
    settings: read it, never change it (copy it first)."""
    written: dict[tuple, Path] = {}

    def get(**settings) -> Path:
        key = tuple(sorted(settings.items()))
        if key not in written:
            written[key] = write_phantom_dataset(tmp_path_factory.mktemp("phantom"), **settings)
        return written[key]

    return get


@pytest.fixture
def cli_error(capsys):
    """``cli_error(argv)`` runs ``sonofm argv``, checks it failed with one ``sonofm: error:`` line and exit code 2
    (no traceback), and returns that line."""

    def run(argv: list[str]) -> str:
        code = main(argv)
        captured = capsys.readouterr()
        assert code == 2, captured
        assert "Traceback" not in captured.err and captured.err.startswith("sonofm: error: ")
        assert captured.err.count("\n") == 1
        return captured.err

    return run
