"""Running the application with uvicorn: in the foreground for ``sonofm serve``, or in a background thread (the
benchmark, the tests)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from sonofm.errors import SonofmError
from sonofm.serve.app import ServeSettings, build_app
from sonofm.serve.models import load_served_models
from sonofm.serve.security import is_loopback


def serve(paths: Sequence[str | Path], host: str = "127.0.0.1", port: int = 8000, max_upload_mb: float = 50,
          precision: str = "32", echo: Callable[[str], None] = partial(print, flush=True)) -> None:
    """Load the models of ``paths`` and serve the page until Ctrl-C (``echo`` says where, flushed at once).

    uvicorn handles Ctrl-C itself, shuts down, then raises the signal again; that second SIGINT becomes a
    KeyboardInterrupt only if it lands before asyncio's main task has finished, so both endings mean "stopped".
    """
    if max_upload_mb <= 0:
        raise SonofmError(f"--max-upload-mb must be > 0, got {max_upload_mb}")
    models = load_served_models(paths, precision)
    app = build_app(models, ServeSettings(host, int(max_upload_mb * 2**20)))
    listening = bind(host, port)
    if not is_loopback(host):
        echo(f"warning: serving on {host}, not only this machine: anyone who can reach it can upload images and run "
             "the models (there is no login); use the default --host 127.0.0.1 unless you mean it")
    names = ", ".join(f"{model.name} ({model.runner.task})" for model in models)
    echo(f"serving {names} at {url_of(listening)} (Ctrl-C stops)")
    running = _server(app)
    running.run(sockets=[listening])  # returns (or raises KeyboardInterrupt) after Ctrl-C, once shut down
    if not running.started:
        raise SonofmError("the server stopped before it started serving (see the message above)")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port); SonofmError when it cannot be had.

    The socket is made with protocol IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only then, and
    without it every response (headers and body written apart) waits ~40 ms for the client's delayed ACK.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             proto=socket.IPPROTO_TCP)[0]
        listening = socket.socket(family, kind, proto)
    except OSError as error:
        raise _cannot_listen(host, port, error) from None
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(address)
        listening.listen(128)
    except OSError as error:
        listening.close()
        raise _cannot_listen(host, port, error) from None
    return listening


def _cannot_listen(host: str, port: int, error: OSError) -> SonofmError:
    return SonofmError(f"cannot listen on {host}:{port}: {error.strerror or error}")


def url_of(listening: socket.socket) -> str:
    host, port = listening.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def _server(app: Starlette) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5))


@contextmanager
def running_server(app: Starlette, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` on a free port of ``host`` in a background thread; yields its URL, stops it on exit."""
    listening = bind(host, 0)
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.01)
    try:
        yield url_of(listening)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listening.close()
