"""Find the images a command should read: one file or a folder searched recursively, cines and multi-frame DICOM
expanded into frame references."""

from __future__ import annotations

from pathlib import Path

from sonofm.data.frames import expand_source
from sonofm.data.image_io import INPUT_EXTENSIONS, is_image_file
from sonofm.errors import SonofmError


def find_input_images(path: Path) -> list[Path]:
    """Sorted image paths of ``path`` (a file or a folder, searched recursively; hidden files and folders skipped).

    Raises SonofmError naming ``path`` when it does not exist, is not a supported file, or holds no images.
    """
    path = Path(path)
    if path.is_file():
        if not is_image_file(path):
            raise SonofmError(f"unsupported input file {path} (use {', '.join(INPUT_EXTENSIONS)})")
        return expand_source(path)
    if not path.is_dir():
        raise SonofmError(f"input not found: {path}")
    files = sorted(
        p for p in path.rglob("*")
        if p.is_file() and is_image_file(p) and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    images = [image for file in files for image in expand_source(file)]
    if not images:
        raise SonofmError(f"no images ({', '.join(INPUT_EXTENSIONS)}) under {path}")
    return images
