"""DICOM decoding: bit depths, photometrics, JPEG, multi-frame, pixel spacing, anonymity, broken files."""

import numpy as np
import pytest

from sonofm.data.dicom_io import dicom_frame_count, dicom_metadata, read_dicom_frame
from sonofm.data.image_io import image_size, read_image
from sonofm.errors import SonofmError


def test_8bit_monochrome2_is_read_as_is(tmp_path, media):
    frames = media.ramp(1, color=False)
    image = read_image(media.dicom(tmp_path / "a.dcm", frames))
    assert image.shape == (32, 48, 3) and image.dtype == np.uint8
    assert np.array_equal(image[:, :, 0], frames[0]) and np.array_equal(image[:, :, 2], frames[0])
    assert image_size(tmp_path / "a.dcm") == (48, 32)


def test_monochrome1_is_inverted(tmp_path, media):
    frames = media.ramp(1, color=False)
    image = read_image(media.dicom(tmp_path / "m1.dcm", frames, photometric="MONOCHROME1"))
    assert np.array_equal(image[:, :, 0], 255 - frames[0])


def test_16bit_is_stretched_to_8bit(tmp_path, media):
    frames = np.zeros((1, 4, 4), dtype=np.uint16)
    frames[0, 0, 0], frames[0, 1, 1] = 1000, 3000
    image = read_image(media.dicom(tmp_path / "w.dcm", frames))
    assert image[0, 0, 0] == 85 and image[1, 1, 0] == 255 and image[2, 2, 0] == 0


def test_window_is_applied(tmp_path, media):
    frames = np.array([[[0, 50, 100, 150, 1000]]], dtype=np.uint16)
    image = read_image(media.dicom(tmp_path / "win.dcm", frames, window=(100, 100)))
    values = image[0, :, 0].tolist()  # below and above the window clip; the wide outlier does not squash it
    assert values[:2] == [0, 0] and abs(values[2] - 128) <= 1 and values[3:] == [255, 255]


def test_rgb_and_jpeg_multi_frame(tmp_path, media):
    frames = media.ramp(2)
    assert np.array_equal(read_dicom_frame(media.dicom(tmp_path / "rgb.dcm", frames), 1), frames[1])
    path = media.dicom(tmp_path / "jpeg.dcm", frames, jpeg=True)
    assert dicom_frame_count(path) == 2
    decoded = read_dicom_frame(path, 1)
    assert decoded.shape == (32, 48, 3) and np.abs(decoded.astype(int) - frames[1]).mean() < 3


def test_jpeg_gray(tmp_path, media):
    frames = media.ramp(1, color=False)
    image = read_image(media.dicom(tmp_path / "jg.dcm", frames, jpeg=True))
    assert np.abs(image[:, :, 0].astype(int) - frames[0]).mean() < 3


def test_pixel_spacing_and_ultrasound_region(tmp_path, media):
    frames = media.ramp(1, color=False)
    assert dicom_metadata(media.dicom(tmp_path / "p.dcm", frames, spacing_mm=0.25))["pixel_size_mm"] == "0.25"
    assert dicom_metadata(media.dicom(tmp_path / "r.dcm", frames, region_cm=0.015))["pixel_size_mm"] == "0.15"
    assert "pixel_size_mm" not in dicom_metadata(media.dicom(tmp_path / "n.dcm", frames))


def test_metadata_is_technical_only(tmp_path, media):
    meta = dicom_metadata(media.dicom(tmp_path / "x.dcm", media.ramp(3, color=False)))
    assert meta["frames"] == "3" and meta["modality"] == "US" and meta["rows"] == "32" and meta["cols"] == "48"
    text = repr(meta)
    assert "Doe" not in text and "SECRET" not in text and "1970" not in text


@pytest.mark.parametrize("content", [b"", b"not a dicom at all" * 10])
def test_non_dicom_fails_naming_file(tmp_path, content):
    path = tmp_path / "bad.dcm"
    path.write_bytes(content)
    with pytest.raises(SonofmError, match="bad.dcm"):
        read_image(path)


def test_truncated_pixel_data_fails_naming_file(tmp_path, media):
    path = media.dicom(tmp_path / "cut.dcm", media.ramp(2, color=False))
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(SonofmError, match="cut.dcm"):
        read_dicom_frame(path, 1)


def test_frames_of_one_file_parse_it_once(tmp_path, media, monkeypatch):
    import pydicom
    path = media.dicom(tmp_path / "many.dcm", media.ramp(4, color=False))
    calls = []
    dcmread = pydicom.dcmread
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: calls.append(a) or dcmread(*a, **k))
    for index in range(4):
        read_dicom_frame(path, index)
    assert len(calls) == 1
