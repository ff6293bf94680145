"""Frame references: virtual paths naming one frame of a cine loop or multi-frame DICOM.

A frame reference sits *below* its source file: ``dir/clip.mp4/clip_f0007`` is frame 7 of ``dir/clip.mp4``. Its
stem is unique per frame, so per-image outputs (``masks/NAME.png``) never collide, and ``read_image`` decodes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sonofm.data.cine_io import CINE_EXTENSIONS, cine_frame_count
from sonofm.data.dicom_io import DICOM_EXTENSIONS, dicom_frame_count
from sonofm.errors import SonofmError

_FRAME_NAME = re.compile(r"^(?P<stem>.*)_f(?P<index>\d{4,})$")


@dataclass(frozen=True)
class FrameSampling:
    """Which frames of a multi-frame source become samples: every ``step``-th, at most ``max_frames`` of them."""

    step: int = 1
    max_frames: int | None = None

    def __post_init__(self) -> None:
        if self.step < 1:
            raise SonofmError(f"frame step must be >= 1, got {self.step}")
        if self.max_frames is not None and self.max_frames < 1:
            raise SonofmError(f"max frames must be >= 1, got {self.max_frames}")

    def indices(self, count: int) -> list[int]:
        """Sampled frame indices of a source holding ``count`` frames."""
        picked = list(range(0, count, self.step))
        return picked if self.max_frames is None else picked[: self.max_frames]


_default = FrameSampling()


def set_default_sampling(sampling: FrameSampling) -> None:
    """Set the process-wide sampling used by :func:`expand_source` when none is passed."""
    global _default
    _default = sampling


def default_sampling() -> FrameSampling:
    """The process-wide frame sampling (every frame unless set)."""
    return _default


def is_cine_file(path: Path) -> bool:
    return path.suffix.lower() in CINE_EXTENSIONS


def is_dicom_file(path: Path) -> bool:
    return path.suffix.lower() in DICOM_EXTENSIONS


def is_source_file(path: Path) -> bool:
    """True for a visible cine or DICOM file name (by extension)."""
    return (is_cine_file(path) or is_dicom_file(path)) and not path.name.startswith(".")


def make_frame_ref(source: Path, index: int) -> Path:
    """``source/<source stem>_fNNNN`` naming frame ``index`` of ``source``."""
    return Path(source) / f"{Path(source).stem}_f{index:04d}"


def parse_frame_name(name: str) -> tuple[str, int] | None:
    """``(source stem, frame index)`` of a frame name such as ``clip_f0007``, else ``None``."""
    match = _FRAME_NAME.match(name)
    return (match["stem"], int(match["index"])) if match else None


def parse_frame_ref(path: Path) -> tuple[Path, int] | None:
    """``(source, frame index)`` when ``path`` is a frame reference of an existing source file, else ``None``."""
    path = Path(path)
    match = _FRAME_NAME.match(path.name)
    source = path.parent
    if match is None or match["stem"] != source.stem or not is_source_file(source) or not source.is_file():
        return None
    return source, int(match["index"])


def is_frame_ref(path: Path) -> bool:
    return parse_frame_ref(path) is not None


def frame_count(source: Path) -> int:
    """Frames in a cine or DICOM file."""
    return cine_frame_count(source) if is_cine_file(source) else dicom_frame_count(source)


def expand_source(path: Path, sampling: FrameSampling | None = None) -> list[Path]:
    """The sample paths of one file: frame references of the sampled frames for a cine or multi-frame DICOM, the
    path itself for a single-frame DICOM or a plain image."""
    path = Path(path)
    if not is_source_file(path):
        return [path]
    if is_dicom_file(path) and dicom_frame_count(path) == 1:
        return [path]
    sampling = sampling or _default
    return [make_frame_ref(path, index) for index in sampling.indices(frame_count(path))]


def source_of(path: Path) -> Path:
    """The file a sample path reads from: the source of a frame reference, else the path itself."""
    parsed = parse_frame_ref(path)
    return parsed[0] if parsed else Path(path)
