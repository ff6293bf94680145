"""Files decoded from memory (uploads) give the path readers' pixels and their one-line errors, naming the file by the
given name only."""

import numpy as np
import pytest
from PIL import Image

from sonofm.data.cine_io import read_cine_frame
from sonofm.data.dicom_io import read_dicom_frame
from sonofm.data.image_io import read_image
from sonofm.data.memory_files import UnsupportedFileType, decode_file
from sonofm.errors import SonofmError


def test_plain_images_decode_as_read_image(tmp_path):
    rng = np.random.default_rng(0)
    gray16 = rng.integers(0, 65535, (12, 9), dtype=np.uint16)
    Image.fromarray(gray16).save(tmp_path / "wide.png")
    Image.fromarray(rng.integers(0, 255, (12, 9, 3), dtype=np.uint8)).save(tmp_path / "rgb.jpg", quality=90)
    for name in ("wide.png", "rgb.jpg"):
        file = decode_file((tmp_path / name).read_bytes(), name)
        assert (file.kind, file.frames, file.pixel_size_mm) == ("image", 1, None)
        assert np.array_equal(file.frame(0), read_image(tmp_path / name))


def test_dicom_and_cine_frames_decode_as_the_path_readers(tmp_path, media):
    frames = media.ramp(4, color=False)
    dicom = media.dicom(tmp_path / "study.dcm", frames, region_cm=0.02, jpeg=False)
    file = decode_file(dicom.read_bytes(), "study.dcm")
    assert (file.kind, file.frames, file.pixel_size_mm) == ("dicom", 4, pytest.approx(0.2))
    assert all(np.array_equal(file.frame(index), read_dicom_frame(dicom, index)) for index in range(4))
    clip = media.video(tmp_path / "loop.mp4", media.ramp(6))
    file = decode_file(clip.read_bytes(), "loop.mp4")
    assert (file.kind, file.frames) == ("cine", 6)
    assert np.array_equal(file.frame(5), read_cine_frame(clip, 5))
    with pytest.raises(SonofmError, match=r"^loop.mp4 has no frame 6 \(6 frames\)$"):
        file.frame(6)


@pytest.mark.parametrize("name, build, message", [
    ("a.png", lambda tmp, media: b"not an image", "cannot read image a.png: not an image file"),
    ("a.dcm", lambda tmp, media: b"\0" * 200, "cannot read DICOM a.dcm: not a DICOM file"),
    ("a.dcm", lambda tmp, media: media.dicom(tmp / "x.dcm", media.ramp(3, color=False)).read_bytes()[:-2000],
     "cannot read DICOM a.dcm: declares 3 frames of 48x32"),
    ("a.mp4", lambda tmp, media: media.video(tmp / "x.mp4", media.ramp(4)).read_bytes()[:300],
     "cannot read cine a.mp4: "),
    ("a.gif", lambda tmp, media: b"GIF89a", "cannot read cine a.gif: "),
    ("a.exe", lambda tmp, media: b"MZ", "cannot read a.exe: unsupported file type; use one of .png"),
])
def test_bad_files_fail_in_one_line_naming_the_given_name(tmp_path, media, name, build, message):
    with pytest.raises(SonofmError) as raised:
        decode_file(build(tmp_path, media), name)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
    assert str(tmp_path) not in str(raised.value)
    assert isinstance(raised.value, UnsupportedFileType) == name.endswith(".exe")
