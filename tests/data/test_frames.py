"""Frame references and frame sampling."""

from pathlib import Path

import pytest

from sonofm.cli.inputs import add_frame_flags, apply_frame_flags
from sonofm.data.frames import (FrameSampling, default_sampling, expand_source, make_frame_ref, parse_frame_ref,
                                set_default_sampling)
from sonofm.errors import SonofmError


@pytest.fixture(autouse=True)
def _restore_sampling():
    yield
    set_default_sampling(FrameSampling())


def test_frame_ref_round_trip(tmp_path, media):
    clip = media.video(tmp_path / "clip.gif", media.ramp(3))
    ref = make_frame_ref(clip, 7)
    assert ref == tmp_path / "clip.gif" / "clip_f0007" and ref.stem == "clip_f0007"
    assert parse_frame_ref(ref) == (clip, 7)
    assert parse_frame_ref(tmp_path / "clip.gif" / "other_f0001") is None
    assert parse_frame_ref(tmp_path / "missing.gif" / "missing_f0001") is None
    assert parse_frame_ref(Path("a/b_f0001")) is None


def test_sampling_indices():
    assert FrameSampling().indices(4) == [0, 1, 2, 3]
    assert FrameSampling(step=3).indices(10) == [0, 3, 6, 9]
    assert FrameSampling(step=2, max_frames=2).indices(10) == [0, 2]
    with pytest.raises(SonofmError, match="frame step"):
        FrameSampling(step=0)


def test_expand_uses_default_sampling(tmp_path, media):
    clip = media.video(tmp_path / "clip.gif", media.ramp(6))
    assert [p.name for p in expand_source(clip)] == [f"clip_f000{i}" for i in range(6)]
    single = media.dicom(tmp_path / "one.dcm", media.ramp(1, color=False))
    assert expand_source(single) == [single]
    set_default_sampling(FrameSampling(step=2, max_frames=2))
    assert [p.name for p in expand_source(clip)] == ["clip_f0000", "clip_f0002"]


def test_cli_flags_set_process_default():
    import argparse
    parser = argparse.ArgumentParser()
    add_frame_flags(parser)
    apply_frame_flags(parser.parse_args(["--frame-step", "5", "--max-frames", "3"]))
    assert default_sampling() == FrameSampling(step=5, max_frames=3)
    apply_frame_flags(parser.parse_args([]))
    assert default_sampling() == FrameSampling()
