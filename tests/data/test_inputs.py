"""find_input_images: files, folders, DICOM and cines expanded, errors naming the path."""

import numpy as np
import pytest
from PIL import Image

from sonofm.data.image_io import read_image
from sonofm.data.inputs import find_input_images
from sonofm.errors import SonofmError


def test_folder_with_images_dicom_and_cine(tmp_path, media):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "b.png")
    (tmp_path / "sub").mkdir()
    media.dicom(tmp_path / "sub" / "a.dcm", media.ramp(2, color=False))
    media.video(tmp_path / "c.mp4", media.ramp(3))
    (tmp_path / "notes.txt").write_text("x")
    found = find_input_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "b.png", "c.mp4/c_f0000", "c.mp4/c_f0001", "c.mp4/c_f0002", "sub/a.dcm/a_f0000", "sub/a.dcm/a_f0001"]
    assert all(read_image(p).shape[2] == 3 for p in found)


def test_single_file(tmp_path, media):
    path = media.dicom(tmp_path / "one.dcm", media.ramp(1, color=False))
    assert find_input_images(path) == [path]


def test_errors_name_the_path(tmp_path):
    with pytest.raises(SonofmError, match="no images"):
        find_input_images(tmp_path)
    with pytest.raises(SonofmError, match="missing"):
        find_input_images(tmp_path / "missing")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(SonofmError, match="x.txt"):
        find_input_images(tmp_path / "x.txt")
