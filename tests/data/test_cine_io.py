"""Cine loops: MP4, AVI and GIF decode frame by frame; broken files fail naming the file."""

import numpy as np
import pytest

from sonofm.data import cine_io
from sonofm.data.cine_io import cine_frame_count, read_cine_frame
from sonofm.errors import SonofmError


@pytest.mark.parametrize("name", ["clip.mp4", "clip.avi", "clip.gif"])
def test_frames_decode_in_order(tmp_path, media, name):
    frames = media.ramp(5)
    path = media.video(tmp_path / name, frames)
    assert cine_frame_count(path) == 5
    for index in (4, 0, 2):  # random access
        decoded = read_cine_frame(path, index)
        assert decoded.shape == (32, 48, 3) and decoded.dtype == np.uint8
        assert abs(decoded.astype(float).mean() - frames[index].mean()) < 3


def test_clip_is_decoded_once(tmp_path, media, monkeypatch):
    path = media.video(tmp_path / "c.gif", media.ramp(3))
    calls = []
    decode = cine_io._decode_all
    monkeypatch.setattr(cine_io, "_decode_all", lambda p: calls.append(p) or decode(p))
    for index in range(3):
        read_cine_frame(path, index)
    assert len(calls) == 1


def test_out_of_range_frame(tmp_path, media):
    path = media.video(tmp_path / "d.gif", media.ramp(2))
    with pytest.raises(SonofmError, match="frame 5 out of range"):
        read_cine_frame(path, 5)


@pytest.mark.parametrize("name", ["broken.mp4", "broken.avi", "broken.gif"])
def test_corrupt_file_fails_naming_it(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x00garbage" * 50)
    with pytest.raises(SonofmError, match=name):
        cine_frame_count(path)


def test_truncated_mp4_fails_naming_it(tmp_path, media):
    path = media.video(tmp_path / "cut.mp4", media.ramp(5))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SonofmError, match="cut.mp4"):
        cine_frame_count(path)
