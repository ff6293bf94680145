"""Guards of the local server: the hosts it answers to (no DNS rebinding onto a loopback server), POST requests only
from its own page (a custom header that other sites' pages cannot send without a CORS preflight, which is never
granted), and headers that keep the page and its images out of caches and other sites' frames."""

from __future__ import annotations

import ipaddress

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLIENT_HEADER = "x-sonofm"  # the page sends "X-Sonofm: 1" with every POST
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                                 b"base-uri 'none'; frame-ancestors 'none'"),
]


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The name of a Host header without its port (``[::1]:8000`` -> ``::1``)."""
    if header.startswith("["):
        return header[1:header.find("]")]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware: refuses requests for other host names when ``host_names`` is given (a loopback server) and
    POSTs without the page's header; adds :data:`HEADERS` to every response."""

    def __init__(self, app: ASGIApp, host_names: frozenset[str] | None) -> None:
        self.app = app
        self.host_names = host_names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = None
        if self.host_names is not None and _host_name(headers.get("host", "")) not in self.host_names:
            refusal = JSONResponse({"error": "unknown host name; open the address `sonofm serve` printed"}, 400)
        elif scope["method"] == "POST" and headers.get(CLIENT_HEADER) != "1":
            refusal = JSONResponse({"error": f"POST requests need the header {CLIENT_HEADER.title()}: 1"}, 403)

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        if refusal is None:
            await self.app(scope, receive, send_guarded)
        else:
            await refusal(scope, receive, send_guarded)
