"""Fixtures shared by all test folders."""

import os
from pathlib import Path

import pytest
import torch

from sonofm.cli.main import main


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist the workers share the cores: each gets its share of torch threads (oversubscribed OpenMP
    threads spin and slow every worker down)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // workers))


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
