"""Tiny random-init runs of every task on phantom data (built once per test process, on first use), a served app on
loopback, and small DICOM and cine files in memory."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn import functional as F

from sonofm.cli.main import main
from sonofm.data.transforms import ClassificationTransform
from sonofm.sam import build_sam, load_adapted_sam, save_sam_checkpoint
from sonofm.sam.prompts import Prompts
from sonofm.tasks.sam.automask import anatomy_map

TINY = ["--img-size", "32", "--epochs", "1", "--batch-size", "16", "--num-workers", "0", "--no-progress",
        "--model", "usfm_vit_tiny_patch16", "--set", "model_args={depth: 2}"]
SAM = ["--epochs", "1", "--batch-size", "8", "--num-workers", "0", "--precision", "32", "--no-progress"]
FLAGS = {
    "cls": ["finetune", "cls", "--data", "@cls", *TINY],
    "seg": ["finetune", "seg", "--data", "@seg", *TINY, "--head", "linear"],
    "enhance": ["finetune", "enhance", "--data", "@cls", *TINY, "--degradation", "speckle"],
    "asam": ["sam", "finetune", "--data", "@seg", "--sam-checkpoint", "@checkpoint", "--sam-type", "vit_tiny",
             "--img-size", "64", "--adapter", "lora", "--prompts", "point", *SAM],
    "prompter": ["sam", "train-prompter", "--run", "@asam", "--data", "@seg", *SAM],
}


@pytest.fixture(scope="session")
def phantom(phantom_set) -> Path:
    """16 phantom images per task (four classes; lesion and layer masks), 48 px."""
    return phantom_set(n_per_class=4, size=48, seed=3, frames_per_group=1)


@pytest.fixture(scope="session")
def serve_run(phantom, tmp_path_factory) -> Callable[[str], Path]:
    """``serve_run(kind)``: the run folder of ``cls``, ``seg``, ``enhance``, ``asam`` (A-SAM, LoRA, 64 px) or
    ``prompter`` (that A-SAM with a class prompter), trained for one epoch on first use."""
    root = tmp_path_factory.mktemp("serve_runs")
    built: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in built:
            places = {"cls": phantom / "cls", "seg": phantom / "seg", "checkpoint": _checkpoint(root)}
            if kind == "prompter":
                places["asam"] = get("asam")
            argv = [str(places[part[1:]]) if part.startswith("@") else part for part in FLAGS[kind]]
            torch.manual_seed(0)
            assert main([*argv, "--out", str(root / kind)]) == 0
            built[kind] = root / kind
        return built[kind]

    return get


def _checkpoint(root: Path) -> Path:
    path = root / "sam_vit_tiny.pth"
    if not path.is_file():
        torch.manual_seed(0)
        save_sam_checkpoint(build_sam("vit_tiny"), path)
    return path


@pytest.fixture(scope="session")
def sample_image(phantom, tmp_path_factory) -> Path:
    """A phantom image resized to 72 x 40 (not the models' square input size)."""
    source = sorted((phantom / "seg" / "images").glob("*.png"))[0]
    path = tmp_path_factory.mktemp("images") / "scan.png"
    Image.open(source).convert("L").resize((72, 40), Image.BICUBIC).save(path)
    return path


@pytest.fixture(scope="session")
def media():
    """Files in memory, as attributes: ``media.dicom(frames, spacing_mm, pixels)``, ``media.gif(frames)``."""
    class Media:
        dicom = staticmethod(dicom_bytes)
        gif = staticmethod(gif_bytes)
    return Media


def dicom_bytes(frames: np.ndarray, spacing_mm: float | None = None, pixels: bool = True) -> bytes:
    """A monochrome DICOM file of ``frames`` (``(N, H, W)`` uint8), optionally with PixelSpacing, optionally without
    its pixel data."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundMultiFrameImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    dataset.PatientName, dataset.Modality = "Doe^Jane", "US"
    dataset.Rows, dataset.Columns = frames.shape[1:]
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit, dataset.PixelRepresentation = 8, 8, 7, 0
    if len(frames) > 1:
        dataset.NumberOfFrames = len(frames)
    if spacing_mm is not None:
        dataset.PixelSpacing = [spacing_mm, spacing_mm]
    if pixels:
        dataset.PixelData = np.ascontiguousarray(frames).tobytes()
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def gif_bytes(frames: np.ndarray) -> bytes:
    """A cine loop (GIF) of ``(N, H, W)`` uint8 frames."""
    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=50, loop=0)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def reference():
    """What the page's answers are checked against, as attributes: ``reference.sam(run, image, clicks, box)``,
    ``reference.png(data_url)``."""
    class Reference:
        sam = staticmethod(direct_sam)
        png = staticmethod(png_array)
    return Reference


def direct_sam(run: Path, image: np.ndarray, clicks: list, box: list | None) -> tuple[np.ndarray, np.ndarray]:
    """The A-SAM's prompted mask (bool) and anatomy map of ``image``, computed here from the model's parts."""
    model = load_adapted_sam(run / "model.safetensors")
    height, width = image.shape[:2]
    scale = torch.tensor([64 / width, 64 / height])
    prompts = Prompts(torch.tensor([0]), torch.tensor([1]))
    if clicks:
        prompts.points = ((torch.tensor([[x, y] for x, y, _ in clicks], dtype=torch.float32) + 0.5) * scale - 0.5)[None]
        prompts.point_labels = torch.tensor([[label for _, _, label in clicks]])
    if box is not None:
        prompts.boxes = ((torch.tensor(box, dtype=torch.float32).view(2, 2) + 0.5) * scale - 0.5).view(1, 4)
    with torch.inference_mode():
        embedding = model.embed(ClassificationTransform(64, train=False)(image)[None])
        probs = model.prompted_logits(embedding, prompts).sigmoid()
        scores = model.predict(ClassificationTransform(64, train=False)(image)[None])
    mask = F.interpolate(probs[None], size=(height, width), mode="bilinear", align_corners=False)[0, 0] > 0.5
    return mask.numpy(), anatomy_map(scores[0], (width, height))[0].numpy()


def png_array(data_url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))
