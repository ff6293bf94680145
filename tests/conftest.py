"""Fixtures shared by all test folders."""

import os
from pathlib import Path

import pytest

from sonofm.cli.main import main


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder named by ``SONOFM_DATA`` (e.g. ../shared/data); skips the test when it is unavailable."""
    value = os.environ.get("SONOFM_DATA")
    if not value or not Path(value).is_dir():
        pytest.skip("real data not available (set SONOFM_DATA to the shared data folder)")
    return Path(value)


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
