"""Fixtures shared by the command-line tests."""

import pytest

from sonofm.cli.main import main


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
