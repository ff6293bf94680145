"""The resumable scratch folder of ``sonofm embed``: finished parts of the embedding matrix, one ``.npy`` each.

``OUT.partial/`` (beside the output file) holds ``job.json`` (what is being embedded: the input list's digest and
size, the weights file, pooling, size and precision) and ``part_NNNNNN.npy`` (``float32 (n, D)``, written
atomically when a part is finished). A rerun of the same job skips the finished parts; a different job refuses to
mix with them. The folder is removed once the output is written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from sonofm.atomic import atomic_write, atomic_write_json
from sonofm.errors import SonofmError

PART_IMAGES = 4096
"""Images per part: what an interrupted run can lose."""


def describe_job(paths: list[Path], weights: Path, **settings: Any) -> dict[str, Any]:
    """What identifies an embedding job: the inputs (digest of the path list), the weights file (path, size,
    modification time) and ``settings``."""
    digest = hashlib.sha256("\n".join(map(str, paths)).encode("utf-8")).hexdigest()
    stat = weights.stat()
    return {"inputs": digest, "images": len(paths), "weights": str(weights.resolve()), "weights_bytes": stat.st_size,
            "weights_mtime_ns": stat.st_mtime_ns, **settings}


class EmbeddingParts:
    """The scratch folder of output ``out`` for ``job``; created on first use, refused if it holds another job."""

    def __init__(self, out: Path, job: dict[str, Any]) -> None:
        self.folder = out.with_name(out.name + ".partial")
        manifest = self.folder / "job.json"
        if manifest.is_file() and json.loads(manifest.read_text(encoding="utf-8")) != job:
            raise SonofmError(f"{self.folder} holds a partial embedding of other inputs or settings; delete it or "
                              "choose another --out")
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(manifest, job)

    def path(self, index: int) -> Path:
        return self.folder / f"part_{index:06d}.npy"

    def has(self, index: int) -> bool:
        return self.path(index).is_file()

    def save(self, index: int, embeddings: np.ndarray) -> None:
        def write(tmp: Path) -> None:
            with tmp.open("wb") as handle:
                np.save(handle, embeddings)

        atomic_write(self.path(index), write)

    def load_all(self, parts: int) -> np.ndarray:
        """``float32 (N, D)``: parts ``0 .. parts - 1`` in order."""
        return np.concatenate([np.load(self.path(index)) for index in range(parts)])

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
