"""``sonofm serve`` on the command line: it listens on loopback by default and stops on Ctrl-C, warns about any
other host, and a bad run or limit ends it in one line."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request

import pytest

from sonofm.cli.main import main
from sonofm.serve import server


def test_serve_listens_on_loopback_and_stops_on_ctrl_c(serve_run):
    command = [sys.executable, "-m", "sonofm", "serve", "--run", str(serve_run("cls")), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        match = re.fullmatch(r"serving cls \(cls\) at (http://127\.0\.0\.1:\d+/) \(Ctrl-C stops\)\n", line)
        assert match, line + process.stderr.read() if process.poll() is not None else line
        with urllib.request.urlopen(match[1] + "api/config", timeout=30) as answer:
            assert [model["name"] for model in json.load(answer)["models"]] == ["cls"]
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0 and out.strip() == "sonofm serve: stopped", err


class _NoServer:
    """Stands in for uvicorn's server: returns at once, as after a Ctrl-C (``started``) or a failed start."""

    def __init__(self, started: bool = True):
        self.started = started

    def run(self, sockets):
        sockets[0].close()


def test_a_server_that_returns_after_ctrl_c_has_stopped(serve_run, monkeypatch, capsys):
    monkeypatch.setattr(server, "_server", lambda app: _NoServer())
    assert main(["serve", "--run", str(serve_run("cls")), "--port", "0"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "sonofm serve: stopped"


def test_a_server_that_never_started_is_an_error(serve_run, monkeypatch, cli_error):
    monkeypatch.setattr(server, "_server", lambda app: _NoServer(started=False))
    message = cli_error(["serve", "--run", str(serve_run("cls")), "--port", "0"])
    assert "the server stopped before it started serving" in message


def test_another_host_is_warned_about(serve_run, monkeypatch, capsys):
    monkeypatch.setattr(server, "_server", lambda app: _NoServer())
    assert main(["serve", "--run", str(serve_run("cls")), "--host", "0.0.0.0", "--port", "0"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("warning: serving on 0.0.0.0, not only this machine: anyone who can reach it")
    assert "serving cls (cls) at http://0.0.0.0:" in printed


@pytest.mark.parametrize("flags, message", [
    (["--run", "NOTHING"], "is neither a sonofm run folder nor a model.safetensors"),
    (["--run", "CLS", "--max-upload-mb", "0"], "--max-upload-mb must be > 0, got 0.0"),
])
def test_bad_runs_and_limits_end_in_one_line(serve_run, tmp_path, cli_error, flags, message):
    places = {"NOTHING": str(tmp_path / "nothing"), "CLS": str(serve_run("cls"))}
    assert message in cli_error(["serve", *(places.get(flag, flag) for flag in flags)])
