"""The web application of ``sonofm serve``: the page, its static files and the JSON API.

    GET  /                                  the page (static/index.html, app.js, style.css)
    GET  /api/config                        the models and the upload limit
    POST /api/upload?name=FILE              the file as the raw body -> its upload id, frames, size, pixel size
    GET  /api/uploads/{upload}/frames/{i}   frame i as PNG
    POST /api/predict {model, upload, frame}                 probabilities + Grad-CAM, a mask, a restored image, or
                                                              an A-SAM's anatomy map
    POST /api/embed   {model, upload, frame}                 an A-SAM's image embedding, computed once and cached
    POST /api/prompt  {model, upload, frame, clicks, box}    an A-SAM's mask for clicks [[x, y, 1|0]] and a box
    POST /api/fan     {upload, frame}                        the fan mask's outline and area

Errors a client can cause come back as ``{"error": message}`` with a 4xx status. Decoding and model work run in
worker threads, so the event loop keeps serving while a model computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from sonofm.data.image_io import INPUT_EXTENSIONS
from sonofm.data.memory_files import decode_file, file_kind
from sonofm.errors import SonofmError
from sonofm.serve.fan import fan_result
from sonofm.serve.http import (
    NotFound,
    box_field,
    clicks_field,
    display_name,
    frame_field,
    json_body,
    read_body,
    status_of,
    text_field,
)
from sonofm.serve.models import ServedModel
from sonofm.serve.rendering import png_bytes
from sonofm.serve.security import LOOPBACK_NAMES, Guard, is_loopback
from sonofm.serve.sessions import Upload, UploadStore

STATIC = Path(__file__).parent / "static"
KEPT_UPLOADS = 32


@dataclass(frozen=True)
class ServeSettings:
    """The address the server listens on (a loopback one turns the host-name check on) and the upload limit."""

    host: str = "127.0.0.1"
    max_upload_bytes: int = 50 * 2**20


def build_app(models: list[ServedModel], settings: ServeSettings) -> Starlette:
    """The application serving ``models``; uploads stay in memory (the last 32, at most 4 upload limits in all)."""
    api = _Api({model.name: model for model in models}, settings,
               UploadStore(KEPT_UPLOADS, 4 * settings.max_upload_bytes))
    routes = [
        Route("/", lambda _request: FileResponse(STATIC / "index.html")),
        Mount("/static", StaticFiles(directory=STATIC)),
        Route("/api/config", api.config),
        Route("/api/upload", api.upload, methods=["POST"]),
        Route("/api/uploads/{upload}/frames/{frame:int}", api.frame),
        Route("/api/predict", api.predict, methods=["POST"]),
        Route("/api/embed", api.embed, methods=["POST"]),
        Route("/api/prompt", api.prompt, methods=["POST"]),
        Route("/api/fan", api.fan, methods=["POST"]),
    ]
    hosts = LOOPBACK_NAMES | {settings.host} if is_loopback(settings.host) else None
    return Starlette(routes=routes, middleware=[Middleware(Guard, host_names=hosts)],
                     exception_handlers={SonofmError: _client_error, HTTPException: _http_error})


async def _client_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, SonofmError)
    return JSONResponse({"error": str(error)}, status_code=status_of(error))


async def _http_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return JSONResponse({"error": error.detail}, status_code=error.status_code)


@dataclass
class _Api:
    """The routes' handlers, over the served models and the uploads."""

    models: dict[str, ServedModel]
    settings: ServeSettings
    uploads: UploadStore

    async def config(self, _request: Request) -> Response:
        return JSONResponse({"models": [model.info() for model in self.models.values()],
                             "max_upload_bytes": self.settings.max_upload_bytes, "extensions": INPUT_EXTENSIONS})

    async def upload(self, request: Request) -> Response:
        name = display_name(request.query_params.get("name", ""))
        file_kind(name)  # an unsupported type is refused before its body is read
        data = await read_body(request, self.settings.max_upload_bytes, name)
        if not data:
            raise SonofmError(f"{name} is empty")
        upload = await run_in_threadpool(lambda: self.uploads.add(decode_file(data, name), len(data)))
        return JSONResponse(upload.info())

    async def frame(self, request: Request) -> Response:
        upload = self.uploads.get(request.path_params["upload"])
        image = await run_in_threadpool(upload.frame, request.path_params["frame"])
        return Response(await run_in_threadpool(png_bytes, image), media_type="image/png")

    async def predict(self, request: Request) -> Response:
        model, upload, frame, _ = await self._target(request)
        return JSONResponse(await run_in_threadpool(model.predict, upload, frame))

    async def embed(self, request: Request) -> Response:
        model, upload, frame, _ = await self._target(request)
        return JSONResponse(await run_in_threadpool(model.embed, upload, frame))

    async def prompt(self, request: Request) -> Response:
        model, upload, frame, body = await self._target(request)
        clicks, box = clicks_field(body), box_field(body)
        return JSONResponse(await run_in_threadpool(model.prompt, upload, frame, clicks, box))

    async def fan(self, request: Request) -> Response:
        body = await json_body(request)
        upload = self.uploads.get(text_field(body, "upload"))
        return JSONResponse(await run_in_threadpool(fan_result, upload, frame_field(body)))

    async def _target(self, request: Request) -> tuple[ServedModel, Upload, int, dict[str, Any]]:
        """The model, upload and frame a JSON request names, and its body."""
        body = await json_body(request)
        name = text_field(body, "model")
        if name not in self.models:
            raise NotFound(f"unknown model {name[:40]!r}; this server has {', '.join(self.models)}")
        return self.models[name], self.uploads.get(text_field(body, "upload")), frame_field(body), body
