"""Builders of small DICOM files and cine loops for the clinical-input tests."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, UltrasoundMultiFrameImageStorage, generate_uid

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "SECRET-4711"


def write_dicom(path: Path, frames: np.ndarray, *, spacing_mm: float | None = None, region_cm: float | None = None,
                photometric: str | None = None, jpeg: bool = False, window: tuple[float, float] | None = None) -> Path:
    """Write ``frames`` (``(N, H, W)`` or ``(N, H, W, 3)``, uint8/uint16) as a DICOM file with patient fields set."""
    frames = np.asarray(frames)
    color = frames.ndim == 4
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit if jpeg else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = PATIENT_NAME, PATIENT_ID, "19700101"
    ds.Modality = "US"
    ds.Rows, ds.Columns = frames.shape[1], frames.shape[2]
    ds.SamplesPerPixel = 3 if color else 1
    ds.PhotometricInterpretation = photometric or ("RGB" if color else "MONOCHROME2")
    if color:
        ds.PlanarConfiguration = 0
    bits = 16 if frames.dtype == np.uint16 else 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    if spacing_mm is not None:
        ds.PixelSpacing = [spacing_mm, spacing_mm]
    if region_cm is not None:
        region = Dataset()
        region.PhysicalUnitsXDirection, region.PhysicalUnitsYDirection = 3, 3
        region.PhysicalDeltaX, region.PhysicalDeltaY = region_cm, region_cm
        ds.SequenceOfUltrasoundRegions = [region]
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if jpeg:
        encoded = []
        for frame in frames:
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format="JPEG", quality=95)
            encoded.append(buffer.getvalue())
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
        if color:
            ds.PhotometricInterpretation = "YBR_FULL_422"
    else:
        ds.PixelData = np.ascontiguousarray(frames).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_video(path: Path, frames: np.ndarray) -> Path:
    """Write ``(N, H, W, 3)`` uint8 frames as MP4 (mpeg4), AVI (mjpeg) or GIF by suffix."""
    if path.suffix == ".gif":
        images = [Image.fromarray(f) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=50, loop=0)
        return path
    codec = "mpeg4" if path.suffix == ".mp4" else "mjpeg"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p" if codec == "mpeg4" else "yuvj420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def ramp_frames(n: int, h: int = 32, w: int = 48, color: bool = True) -> np.ndarray:
    """``(n, h, w, 3)`` (or ``(n, h, w)``) uint8 frames whose mean brightness grows with the frame index."""
    base = np.linspace(0, 1, w)[None, :].repeat(h, 0)
    frames = np.stack([(base * 100 + 20 * i).clip(0, 255) for i in range(n)]).astype(np.uint8)
    return np.repeat(frames[..., None], 3, axis=3) if color else frames


@pytest.fixture
def media():
    """The builders, as attributes: ``media.dicom``, ``media.video``, ``media.ramp``."""
    class Media:
        dicom = staticmethod(write_dicom)
        video = staticmethod(write_video)
        ramp = staticmethod(ramp_frames)
    return Media
