"""Uploads kept in memory: a bounded LRU of decoded files, each with a few decoded frames and computed results
(A-SAM image embeddings, the fan mask) cached by key. Nothing is written to disk; an evicted upload is gone."""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from sonofm.data.memory_files import FileInMemory
from sonofm.serve.http import NotFound

FRAMES_KEPT = 8  # decoded frames per upload
RESULTS_KEPT = 8  # cached results (embeddings, fan masks) per upload


class _Lru(OrderedDict):
    """An OrderedDict that drops its oldest entries past ``size``; callers hold the owner's lock."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Hashable, value: Any) -> Any:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)
        return value

    def find(self, key: Hashable) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None


class Upload:
    """One uploaded file, decoded from memory, with its cached frames and results."""

    def __init__(self, upload_id: str, file: FileInMemory, size_bytes: int) -> None:
        self.id = upload_id
        self.file = file
        self.size_bytes = size_bytes
        self._lock = threading.Lock()
        self._frames = _Lru(FRAMES_KEPT)
        self._results = _Lru(RESULTS_KEPT)
        first = self.frame(0)
        self.height, self.width = first.shape[:2]

    def frame(self, index: int, keep: bool = True) -> np.ndarray:
        """Frame ``index`` as ``uint8 (H, W, 3)``, decoded once while it stays among the last few used (``keep``:
        cache it)."""
        with self._lock:
            found = self._frames.find(index)
            if found is None:
                found = self.file.frame(index)
                if keep:
                    self._frames.put(index, found)
            return found

    def result(self, key: Hashable, compute: Callable[[], Any]) -> tuple[Any, bool]:
        """``(value, was_cached)``: the cached result of ``key``, or ``compute()`` stored under it. ``compute`` runs
        outside the upload's lock (two requests may compute one key at once; the model lock serialises a model)."""
        with self._lock:
            found = self._results.find(key)
        if found is not None:
            return found, True
        value = compute()
        with self._lock:
            self._results.put(key, value)
        return value, False

    def info(self) -> dict[str, Any]:
        return {"upload": self.id, "name": self.file.name, "kind": self.file.kind, "frames": self.file.frames,
                "width": self.width, "height": self.height, "pixel_size_mm": self.file.pixel_size_mm}


class UploadStore:
    """The most recent uploads, at most ``max_uploads`` of them holding at most ``max_bytes`` of files in all."""

    def __init__(self, max_uploads: int, max_bytes: int) -> None:
        self.max_uploads = max_uploads
        self.max_bytes = max_bytes
        self._uploads: OrderedDict[str, Upload] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, file: FileInMemory, size_bytes: int) -> Upload:
        upload = Upload(secrets.token_urlsafe(12), file, size_bytes)
        with self._lock:
            self._uploads[upload.id] = upload
            while len(self._uploads) > self.max_uploads or (
                    len(self._uploads) > 1 and sum(u.size_bytes for u in self._uploads.values()) > self.max_bytes):
                self._uploads.popitem(last=False)
        return upload

    def get(self, upload_id: str) -> Upload:
        with self._lock:
            upload = self._uploads.get(upload_id)
            if upload is None:
                raise NotFound(f"unknown upload {upload_id[:40]!r}: open the image again (the server keeps the "
                               f"{self.max_uploads} most recent)")
            self._uploads.move_to_end(upload_id)
            return upload
