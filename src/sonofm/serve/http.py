"""Reading requests safely: bodies read under a size limit, JSON fields checked one by one, client file names
reduced to a display name; the errors a client can cause, each with its HTTP status."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.requests import Request

from sonofm.data.memory_files import UnsupportedFileType
from sonofm.errors import SonofmError

JSON_LIMIT = 64 * 1024  # bytes of a JSON request body
DRAIN_LIMIT = 256 * 2**20  # bytes of a refused body read and dropped before the connection is closed
MAX_CLICKS = 64
MAX_NAME = 100  # characters of a display name

Click = tuple[float, float, int]  # (x, y, label): pixel indices of the image, label 1 positive, 0 negative
Box = tuple[float, float, float, float]  # (x0, y0, x1, y1): inclusive pixel indices of the image


class NotFound(SonofmError):
    """An upload, model or page the server does not have (404)."""


class TooLarge(SonofmError):
    """A request body over its limit (413)."""


def status_of(error: SonofmError) -> int:
    """The HTTP status of a client error: 404, 413, 415 (a file type sonofm does not read) or 400."""
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, TooLarge):
        return 413
    return 415 if isinstance(error, UnsupportedFileType) else 400


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The request body, refused (TooLarge) when its declared length or the bytes received pass ``limit``; no more
    than ``limit`` bytes are ever held. The rest of a refused body is read and dropped (up to 256 MiB), so that a
    client that sends its whole body before reading the answer gets the 413 rather than a reset connection."""
    declared = request.headers.get("content-length", "")
    size = int(declared) if declared.isdigit() else None
    if size is not None and size > DRAIN_LIMIT:
        raise TooLarge(f"{what} is {_megabytes(size)}, over the limit of {_megabytes(limit)}")
    body = bytearray()
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > DRAIN_LIMIT:
            break
        if received <= limit and (size is None or size <= limit):
            body += chunk
    if received > limit or (size is not None and size > limit):
        shown = _megabytes(size or received) if received <= DRAIN_LIMIT else "more than " + _megabytes(DRAIN_LIMIT)
        raise TooLarge(f"{what} is {shown}, over the limit of {_megabytes(limit)}")
    return bytes(body)


def _megabytes(count: int) -> str:
    return f"{count / 2**20:.1f} MB"


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object (at most 64 KiB)."""
    raw = await read_body(request, JSON_LIMIT, "the request")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise SonofmError("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise SonofmError("the request body must be a JSON object")
    return body


def text_field(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise SonofmError(f"'{key}' must be a non-empty string")
    return value


def frame_field(body: dict[str, Any]) -> int:
    """The ``frame`` index (0 when absent)."""
    value = body.get("frame", 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SonofmError("'frame' must be an integer >= 0")
    return value


def clicks_field(body: dict[str, Any]) -> list[Click]:
    """``clicks``: up to 64 ``[x, y, label]`` (pixel indices, label 1 positive or 0 negative)."""
    clicks = body.get("clicks") or []
    if not isinstance(clicks, list) or len(clicks) > MAX_CLICKS:
        raise SonofmError(f"'clicks' must be a list of at most {MAX_CLICKS} [x, y, label] entries")
    checked = []
    for click in clicks:
        if not (isinstance(click, list) and len(click) == 3 and _numbers(click) and click[2] in (0, 1)):
            raise SonofmError(f"a click must be [x, y, label] with label 1 or 0, got {json.dumps(click)[:40]}")
        checked.append((float(click[0]), float(click[1]), int(click[2])))
    return checked


def box_field(body: dict[str, Any]) -> Box | None:
    """``box``: ``[x0, y0, x1, y1]`` (inclusive pixel indices, any corner order) or null."""
    box = body.get("box")
    if box is None:
        return None
    if not (isinstance(box, list) and len(box) == 4 and _numbers(box)):
        raise SonofmError(f"'box' must be [x0, y0, x1, y1] or null, got {json.dumps(box)[:40]}")
    x0, y0, x1, y1 = (float(value) for value in box)
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


def _numbers(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def display_name(raw: str) -> str:
    """A client's file name reduced to something safe to show and to name downloads: its last path part (either
    slash), characters other than letters, digits, ``.``, ``-``, ``_`` and spaces replaced, leading dots and spaces
    dropped, at most 100 characters keeping the extension; ``upload`` when nothing is left. Never a path."""
    last = re.split(r"[\\/]", raw)[-1]
    cleaned = re.sub(r"[^\w.\- ]", "_", last, flags=re.ASCII).lstrip(". ").rstrip(" ")
    if len(cleaned) > MAX_NAME:
        stem, dot, suffix = cleaned.rpartition(".")
        keep_suffix = dot and len(suffix) < 10
        cleaned = stem[: MAX_NAME - len(suffix) - 1] + dot + suffix if keep_suffix else cleaned[:MAX_NAME]
    return cleaned or "upload"
