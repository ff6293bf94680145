"""Cine loops: MP4, AVI and GIF decode frame by frame, by seeking to the frame's keyframe, with the frames a full
decode gives; broken files fail naming the file."""

import av
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


def _all_frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.mark.parametrize("name", ["long.mp4", "long.avi", "long.gif", "bframes.mp4"])
def test_seeking_gives_the_frames_a_full_decode_gives(tmp_path, media, name):
    frames = media.ramp(30, 64, 96)
    path = tmp_path / name
    if name == "bframes.mp4":  # H.264 with B-frames: decode order differs from display order
        write_h264(path, frames)
    else:
        media.video(path, frames)
    reference = _all_frames(path)
    assert cine_frame_count(path) == len(reference)
    for index in [*range(len(reference))][::-1]:
        assert np.array_equal(read_cine_frame(path, index), reference[index]), index


def test_a_frame_is_decoded_from_its_keyframe_not_from_the_start(tmp_path, media, monkeypatch):
    path = media.video(tmp_path / "long.mp4", media.ramp(40))  # mpeg4: a keyframe every 12 frames
    assert len(cine_io.clip_index(path).keyframes) > 2
    decoded = []
    frames_of = cine_io._decoded_frames
    monkeypatch.setattr(cine_io, "_decoded_frames", lambda *args: (decoded.append(f) or f for f in frames_of(*args)))
    read_cine_frame(path, 38)
    assert 1 <= len(decoded) <= 12


def write_h264(path, frames: np.ndarray) -> None:
    try:
        container = av.open(str(path), "w")
        stream = container.add_stream("libx264", rate=25)
    except Exception:  # a PyAV build without the encoder
        pytest.skip("PyAV has no libx264 encoder here")
    stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    stream.options = {"g": "10", "bf": "2"}
    with container:
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


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
