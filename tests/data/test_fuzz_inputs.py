"""A seeded corpus of broken inputs fed through every reader and command that takes files from a user.

Each case is random bytes, an empty file, a truncated, bit-flipped or spliced copy of a valid file, a valid file under
another format's extension, or a header declaring a huge size. Whatever the case, a reader returns a result or raises
one SonofmError line naming the file; a command exits 1 (``data check`` listing the file) or 2 (one
``sonofm: error:`` line naming it), never with a traceback, never writing outside its ``--out`` folder, and never
running code from a pickle. No command trains: broken input is refused before the first step.
"""

from __future__ import annotations

import io
import shutil
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from sonofm.cli.finetune import CLS_FLAGS, cls_config_from_args
from sonofm.cli.main import build_parser, main
from sonofm.data.frames import expand_source
from sonofm.data.image_io import image_size, read_image, read_mask
from sonofm.data.layouts import load_index
from sonofm.errors import SonofmError
from sonofm.models import create_backbone, load_backbone_weights
from sonofm.models.classifier import ImageClassifier
from sonofm.models.state_dict_file import read_weights_file
from sonofm.atomic import atomic_write_json
from sonofm.runs.config import save_config
from sonofm.runs.model_file import save_model
from sonofm.tasks.cls.finetune import ClsFinetuneConfig, model_metadata

SEED = 25
TINY_MODEL = {"depth": 1, "embed_dim": 32, "num_heads": 2}
FAST = ["--model", "usfm_vit_tiny_patch16", "--set", "model_args={depth: 1, embed_dim: 32, num_heads: 2}",
        "--img-size", "32", "--epochs", "1", "--batch-size", "8", "--num-workers", "0", "--no-progress"]
MUTATIONS = ("random", "truncated", "bit_flipped", "spliced")
UNSAFE_ADVICE = ("weights_only", "safe_globals", "add_safe_globals")
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "bmp": ".bmp", "dicom": ".dcm", "dicom_jpeg": ".dcm",
              "mp4": ".mp4", "gif": ".gif", "safetensors": ".safetensors", "torch_zip": ".pth",
              "torch_legacy": ".pt", "checkpoint": ".ckpt"}
IMAGE_KINDS = ("png", "jpeg", "tiff", "bmp", "dicom", "dicom_jpeg", "mp4", "gif")
WEIGHT_KINDS = ("safetensors", "torch_zip", "torch_legacy", "checkpoint")


@dataclass(frozen=True)
class Case:
    """One broken input: the file, the valid kind it was made from and how it was broken."""

    path: Path
    kind: str
    how: str


class WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: if the file ever appears, a pickle ran code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def tiny_classifier() -> ImageClassifier:
    return ImageClassifier(create_backbone("usfm_vit_tiny_patch16", img_size=32, **TINY_MODEL), num_classes=2)


def encoded(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def valid_sources(folder: Path, media) -> dict[str, bytes]:
    """The bytes of one small valid file of every kind (images, clips, DICOM, weights, a training checkpoint)."""
    folder.mkdir(parents=True, exist_ok=True)
    gray = np.random.default_rng(SEED).integers(0, 255, (24, 32), dtype=np.uint8)
    sources = {"png": encoded(gray, "PNG"), "jpeg": encoded(np.stack([gray] * 3, axis=2), "JPEG"),
               "tiff": encoded(gray, "TIFF"), "bmp": encoded(gray, "BMP")}
    frames = media.ramp(3, 16, 24)
    sources["dicom"] = media.dicom(folder / "raw.dcm", frames[..., 0], spacing_mm=0.2).read_bytes()
    sources["dicom_jpeg"] = media.dicom(folder / "jpeg.dcm", frames[..., 0], jpeg=True).read_bytes()
    sources["mp4"] = media.video(folder / "clip.mp4", frames).read_bytes()
    sources["gif"] = media.video(folder / "clip.gif", frames).read_bytes()
    backbone = tiny_classifier().backbone.state_dict()
    save_file(backbone, folder / "w.safetensors")
    sources["safetensors"] = (folder / "w.safetensors").read_bytes()
    torch.save({"model": backbone, "epoch": 3}, folder / "w.pth")
    sources["torch_zip"] = (folder / "w.pth").read_bytes()
    torch.save(backbone, folder / "w.pt", _use_new_zipfile_serialization=False)
    sources["torch_legacy"] = (folder / "w.pt").read_bytes()
    torch.save(lightning_checkpoint(tiny_classifier()), folder / "last.ckpt")
    sources["checkpoint"] = (folder / "last.ckpt").read_bytes()
    return sources


def lightning_checkpoint(model: torch.nn.Module) -> dict:
    """A checkpoint with the entries Lightning writes and reads back when resuming."""
    return {"epoch": 0, "global_step": 1, "pytorch-lightning_version": "2.6.6",
            "state_dict": {f"model.{key}": value for key, value in model.state_dict().items()},
            "loops": {}, "callbacks": {}, "optimizer_states": [], "lr_schedulers": []}


def mutate(data: bytes, how: str, rng: np.random.Generator) -> bytes:
    """``data`` broken ``how``: random bytes, cut short, 1-8 bits flipped, or a run of bytes overwritten."""
    if how == "random":
        return rng.bytes(int(rng.integers(1, 4096)))
    if how == "truncated":
        return data[: int(rng.integers(1, len(data)))]
    broken = bytearray(data)
    if how == "bit_flipped":
        for position in rng.integers(0, len(broken), int(rng.integers(1, 9))):
            broken[position] ^= 1 << int(rng.integers(8))
    else:
        start, length = int(rng.integers(0, len(broken))), int(rng.integers(1, 64))
        broken[start:start + length] = rng.bytes(length)[: len(broken) - start]
    return bytes(broken)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def not_a_checkpoint(path: Path) -> Path:
    """A zip archive holding a text file (no ``data.pkl``)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")
    return path


def huge_png() -> bytes:
    """A PNG whose (checksummed) header claims 100000 x 100000 pixels."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def huge_gif(gif: bytes) -> bytes:
    """A GIF whose logical screen claims 16000 x 16000 pixels (4 GB of RGB frames if decoded)."""
    return gif[:6] + struct.pack("<HH", 16000, 16000) + gif[10:]


def huge_dicom(folder: Path, media, rows: int, frames: int) -> bytes:
    """An 8 x 8 single-frame DICOM whose header claims ``rows`` x ``rows`` pixels and ``frames`` frames."""
    import pydicom

    dataset = pydicom.dcmread(media.dicom(folder / "small.dcm", media.ramp(1, 8, 8, color=False)))
    dataset.Rows, dataset.Columns, dataset.NumberOfFrames = rows, rows, frames
    dataset.save_as(folder / "huge.dcm")
    return (folder / "huge.dcm").read_bytes()


def write_case(folder: Path, name: str, kind: str, how: str, data: bytes, suffix: str | None = None) -> Case:
    path = folder / f"{name}{suffix or EXTENSIONS[kind]}"
    path.write_bytes(data)
    return Case(path, kind, how)


def broken_corpus(folder: Path, kinds: tuple[str, ...], repeats: int, sources: dict[str, bytes]) -> list[Case]:
    """``repeats`` cases of every mutation for every kind, plus an empty file and a wrong extension per kind."""
    rng = np.random.default_rng(SEED)
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for kind in kinds:
        for how in MUTATIONS:
            for repeat in range(repeats):
                data = mutate(sources[kind], how, rng)
                cases.append(write_case(folder, f"{kind}_{how}_{repeat}", kind, how, data))
        cases.append(write_case(folder, f"{kind}_empty", kind, "empty", b""))
        other = next(EXTENSIONS[k] for k in kinds[kinds.index(kind) + 1:] + kinds if EXTENSIONS[k] != EXTENSIONS[kind])
        cases.append(write_case(folder, f"{kind}_renamed", kind, "wrong_extension", sources[kind], other))
    return cases


def image_corpus(folder: Path, media, repeats: int = 8) -> list[Case]:
    """About 275 broken image, clip and DICOM files, huge declared sizes included."""
    sources = valid_sources(folder / "valid", media)
    cases = broken_corpus(folder / "broken", IMAGE_KINDS, repeats, sources)
    broken = folder / "broken"
    cases.append(write_case(broken, "huge", "png", "huge_size", huge_png()))
    cases.append(write_case(broken, "huge_screen", "gif", "huge_size", huge_gif(sources["gif"])))
    cases.append(write_case(broken, "huge_image", "dicom", "huge_size", huge_dicom(folder / "valid", media, 65535, 1)))
    cases.append(write_case(broken, "huge_frames", "dicom", "huge_size", huge_dicom(folder / "valid", media, 8, 10**9)))
    return cases


def refusal(read: Callable[[Path], object], path: Path) -> str | None:
    """The SonofmError message of ``read(path)``, None when it succeeds; any other exception fails the test."""
    try:
        read(path)
    except SonofmError as error:
        return str(error)
    return None


def read_every_sample(path: Path) -> None:
    """Read the file as the dataset readers do: expand a clip or multi-frame DICOM, then decode every sample."""
    for sample in expand_source(path):
        read_image(sample)


def assert_one_line_naming(message: str, path: Path) -> None:
    assert "\n" not in message and str(path) in message, message
    assert not any(word in message for word in UNSAFE_ADVICE), message


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def assert_cli_error_naming(argv: list[str], capsys, path: Path) -> str:
    """Run ``argv``: exit 2 and one ``sonofm: error:`` line that names ``path``."""
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and err.startswith("sonofm: error: ") and err.count("\n") == 1, err
    assert_one_line_naming(err.rstrip("\n"), path)
    return err


def files_outside(root: Path, allowed: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file() and allowed not in path.parents}


def class_folders(root: Path, per_class: int = 3) -> Path:
    for label, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((16, 16), 40 * label + 10 * i + 5, np.uint8)).save(root / name / f"{name}{i}.png")
    return root


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, list[str]]:
    """A finished classification run of a tiny ViT, written the way ``finetune cls`` writes one (config.yaml from the
    same flags, model.safetensors, metrics.json), and the argv that trains it; no training step is needed."""
    root = tmp_path_factory.mktemp("fuzz_run")
    data, out = class_folders(root / "data"), root / "run"
    argv = ["finetune", "cls", "--data", str(data), "--out", str(out), *FAST]
    config = cls_config_from_args(ClsFinetuneConfig(), build_parser().parse_args(argv), CLS_FLAGS)
    save_config(config, out / "config.yaml")
    classifier = ImageClassifier(create_backbone(config.model, img_size=config.img_size, **config.model_args), 2)
    save_model(classifier, out / "model.safetensors", model_metadata(config, load_index(data)))
    atomic_write_json(out / "metrics.json", {"test/accuracy": 0.5})
    return out, argv


def test_readers_refuse_every_broken_image_clip_and_dicom_with_one_line(tmp_path, media):
    cases = image_corpus(tmp_path, media)
    assert len(cases) >= 250
    refused = {}
    for case in cases:
        plain = case.path.suffix in (".png", ".jpg", ".tif", ".bmp")
        readers = [read_every_sample, read_image, image_size] + ([read_mask] if plain else [])
        for read in readers:
            message = refusal(read, case.path)
            if message is not None:
                assert_one_line_naming(message, case.path)
        refused[case] = refusal(read_every_sample, case.path) is not None
    assert all(refused[case] for case in cases if case.how in ("random", "empty", "huge_size"))
    assert all(refused[case] for case in cases if case.how == "truncated" and case.kind not in ("gif", "mp4"))
    assert sum(refused.values()) >= len(cases) / 2  # bit flips in pixel data often leave a decodable image


def test_huge_declared_sizes_are_refused_before_decoding(tmp_path, media):
    cases = {case.path.stem: case.path for case in image_corpus(tmp_path, media, repeats=0)}
    assert "too many pixels" in refusal(read_image, cases["huge"])
    assert "too many pixels" in refusal(image_size, cases["huge"])
    assert "frames of 16000x16000 are too many pixels" in refusal(read_image, cases["huge_screen"])
    assert "65535x65535 is too many pixels" in refusal(expand_source, cases["huge_image"])
    assert "declares 1000000000 frames of 8x8, more than its" in refusal(expand_source, cases["huge_frames"])


def test_weights_loader_refuses_every_broken_file_and_never_runs_pickled_code(tmp_path, media):
    sources = valid_sources(tmp_path / "valid", media)
    cases = broken_corpus(tmp_path / "broken", WEIGHT_KINDS, 9, sources)
    marker = tmp_path / "pickle_ran_code"
    evil = tmp_path / "broken"
    torch.save({"model": tiny_classifier().backbone.state_dict(), "hook": WritesMarker(marker)}, evil / "evil.pth")
    torch.save({"hook": WritesMarker(marker)}, evil / "evil.pt", _use_new_zipfile_serialization=False)
    (evil / "folder.pth").mkdir()
    not_a_checkpoint(evil / "not_a_checkpoint.pth")
    cases += [Case(evil / name, "torch_zip", "special") for name in
              ("evil.pth", "evil.pt", "folder.pth", "not_a_checkpoint.pth")]
    assert len(cases) >= 150
    model = create_backbone("usfm_vit_tiny_patch16", img_size=32, **TINY_MODEL)
    refused = 0
    for case in cases:
        message = refusal(lambda path: load_backbone_weights(model, path), case.path)
        if message is not None:
            assert_one_line_naming(message, case.path)
            refused += 1
    assert not marker.exists()
    assert "pickled Python objects" in refusal(read_weights_file, evil / "evil.pth")
    assert "it is a folder" in refusal(read_weights_file, evil / "folder.pth")
    assert "a zip archive but not a PyTorch checkpoint" in refusal(read_weights_file, evil / "not_a_checkpoint.pth")
    assert all(refusal(read_weights_file, case.path) for case in cases if case.how in ("random", "empty", "truncated"))
    assert refused >= len(cases) / 2  # flipped bits inside tensor data still load


def test_data_check_lists_and_finetune_refuses_each_broken_file(tmp_path, media, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cases = image_corpus(tmp_path / "corpus", media, repeats=1)
    data = class_folders(tmp_path / "data")
    chosen = cases[::3]
    trained = 0
    for case in chosen:
        target = data / "a" / f"broken{case.path.suffix}"
        shutil.copy(case.path, target)
        before = files_outside(tmp_path, tmp_path / "run")
        broken = refusal(read_every_sample, target) is not None
        code, out, err = run_cli(["data", "check", data], capsys)
        assert code == (1 if broken else 0) and err == "", (case, out, err)
        if broken:
            assert any(line.startswith("problem: ") and str(target) in line for line in out.splitlines()), out
            if trained < 4:
                argv = ["finetune", "cls", "--data", data, "--out", tmp_path / "run", *FAST]
                assert "problems in dataset" in assert_cli_error_naming(argv, capsys, target)
                assert not (tmp_path / "run").exists()
                trained += 1
        assert files_outside(tmp_path, tmp_path / "run") == before
        target.unlink()
    assert trained == 4 and len(chosen) >= 10


def test_predict_refuses_each_broken_input_file(tiny_run, tmp_path, media, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run, _ = tiny_run
    cases = [case for case in image_corpus(tmp_path / "corpus", media, repeats=1)
             if refusal(read_every_sample, case.path) is not None][::6]
    for case in cases:
        before = files_outside(tmp_path, tmp_path / "pred")
        assert_cli_error_naming(["predict", "--run", run, "--input", case.path, "--out", tmp_path / "pred",
                                 "--no-progress"], capsys, case.path)
        assert files_outside(tmp_path, tmp_path / "pred") == before and not (tmp_path / "pred").exists()
    assert len(cases) >= 4


def test_predict_refuses_a_damaged_run_model(tiny_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run, _ = tiny_run
    image = class_folders(tmp_path / "data") / "a" / "a0.png"
    valid = (run / "model.safetensors").read_bytes()
    rng = np.random.default_rng(SEED)
    damages = {"random": rng.bytes(2048), "truncated": valid[: len(valid) // 2], "empty": b"",
               "header_not_json": valid[:8] + b"[" + valid[9:],
               "metadata_not_json": valid.replace(b'\\"cls\\"', b"{cls}..", 1)}
    assert len(damages["metadata_not_json"]) == len(valid) and damages["metadata_not_json"] != valid
    for how, data in damages.items():
        damaged = tmp_path / f"run_{how}"
        shutil.copytree(run, damaged)
        (damaged / "model.safetensors").write_bytes(data)
        assert_cli_error_naming(["predict", "--run", damaged, "--input", image, "--out", tmp_path / "pred",
                                 "--no-progress"], capsys, damaged / "model.safetensors")
        assert not (tmp_path / "pred").exists()


def test_finetune_weights_flag_refuses_broken_files_in_one_line(tiny_run, tmp_path, media, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, argv = tiny_run
    data = argv[argv.index("--data") + 1]
    sources = valid_sources(tmp_path / "valid", media)
    model = create_backbone("usfm_vit_tiny_patch16", img_size=32, **TINY_MODEL)
    marker = tmp_path / "pickle_ran_code"
    torch.save({"hook": WritesMarker(marker)}, tmp_path / "evil.pth")
    cases = [case.path for case in broken_corpus(tmp_path / "broken", WEIGHT_KINDS, 1, sources)
             if refusal(lambda path: load_backbone_weights(model, path), case.path)][::2]
    cases += [tmp_path / "evil.pth", not_a_checkpoint(tmp_path / "archive.pth")]
    out = tmp_path / "run"
    before = files_outside(tmp_path, out)
    for path in cases:
        expected = refusal(lambda weights: load_backbone_weights(model, weights), path)
        message = assert_cli_error_naming(["finetune", "cls", "--data", data, "--out", out, "--weights", path,
                                           *FAST], capsys, path)
        assert message == f"sonofm: error: {expected}\n"
        assert not out.exists() and files_outside(tmp_path, out) == before
    assert not marker.exists() and len(cases) >= 8


def test_resume_refuses_a_damaged_checkpoint_and_says_how_to_start_over(tiny_run, tmp_path, media, capsys,
                                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    run, argv = tiny_run
    sources = valid_sources(tmp_path / "valid", media)
    rng = np.random.default_rng(SEED)
    marker = tmp_path / "pickle_ran_code"
    evil, weights_only = io.BytesIO(), io.BytesIO()
    torch.save({**lightning_checkpoint(tiny_classifier()), "hook": WritesMarker(marker)}, evil)
    torch.save(tiny_classifier().state_dict(), weights_only)  # a state dict, not a training checkpoint
    damaged = [mutate(sources["checkpoint"], how, rng) for how in ("random", "truncated")]
    archive = not_a_checkpoint(tmp_path / "archive.zip").read_bytes()
    for number, data in enumerate([*damaged, b"", evil.getvalue(), sources["safetensors"], archive,
                                   weights_only.getvalue()]):
        unfinished = tmp_path / f"run_{number}"
        shutil.copytree(run, unfinished, ignore=shutil.ignore_patterns("metrics.json", "model.safetensors"))
        checkpoint = unfinished / "checkpoints" / "last.ckpt"
        checkpoint.parent.mkdir()
        checkpoint.write_bytes(data)
        resume = [*argv[: argv.index("--out") + 1], unfinished, *argv[argv.index("--out") + 2:]]
        before = sorted(unfinished.rglob("*"))
        message = assert_cli_error_naming(resume, capsys, checkpoint)
        assert f"cannot resume run {unfinished}" in message and "pass --overwrite to start the run over" in message
        assert sorted(unfinished.rglob("*")) == before
    assert not marker.exists()
