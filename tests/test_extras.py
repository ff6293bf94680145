"""Optional extras: declared in pyproject.toml and pinned in constraints.txt; without them the base commands run and
each command needing one ends with one line naming it (checked in an environment that lacks every extra)."""

import importlib.metadata
import json
import re
import subprocess
import sys
import sysconfig
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from sonofm.errors import SonofmError
from sonofm.extras import EXTRA_OF, MissingExtra, as_missing_extra, require_extra

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
EXTRAS = PROJECT["optional-dependencies"]
OPT_IN = {"jpeg-gpl"}  # GPL-3: never pulled in by `all`
FAST = ["--model", "usfm_vit_tiny_patch16", "--set", "model_args={depth: 2}", "--img-size", "64", "--epochs", "1",
        "--batch-size", "16", "--num-workers", "0", "--no-progress"]


def requirements(extra: str | None = None) -> list[Requirement]:
    """The requirements of the base install (``extra=None``) or of one extra, without references to sonofm's own
    extras."""
    listed = PROJECT["dependencies"] if extra is None else EXTRAS[extra]
    return [req for req in map(Requirement, listed) if canonicalize_name(req.name) != "sonofm"]


def included_extras(extra: str) -> set[str]:
    """The extras an extra pulls in with ``sonofm[...]``."""
    return {name for req in map(Requirement, EXTRAS[extra]) if req.name == "sonofm" for name in req.extras}


def test_require_extra_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(EXTRA_OF, "sonofm_no_such_module", "video")
    with pytest.raises(MissingExtra) as raised:
        require_extra("sonofm_no_such_module.part", "cine input (a.mp4)")
    assert str(raised.value) == "cine input (a.mp4) needs the `video` extra: pip install 'sonofm[video]'"
    assert require_extra("json", "anything") is sys.modules["json"]


def test_other_missing_modules_are_no_missing_extra() -> None:
    assert as_missing_extra(ModuleNotFoundError("No module named 'torch'", name="torch"), "sonofm x") is None
    assert "`sam`" in str(as_missing_extra(ModuleNotFoundError(name="segment_anything.modeling"), "sonofm sam"))


def test_every_extra_is_declared_and_all_holds_every_one_but_the_gpl_one() -> None:
    assert set(EXTRA_OF.values()) <= EXTRAS.keys()
    assert EXTRAS.keys() - {"all", "test", *OPT_IN} <= included_extras("all")
    assert not included_extras("all") & OPT_IN
    assert included_extras("jpeg-gpl") == {"dicom"}
    base = {canonicalize_name(req.name) for req in requirements()}
    assert not base & {canonicalize_name(req.name) for extra in EXTRAS for req in requirements(extra)}
    rows = [line.split("|")[1] for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("| `")]
    assert all(any(f"`{extra}`" in row for row in rows) for extra in EXTRAS), "an extra missing in README's table"


def test_constraints_pin_every_installed_requirement_inside_its_range() -> None:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    problems = []
    for req in requirements() + [req for extra in EXTRAS for req in requirements(extra)]:
        name = canonicalize_name(req.name)
        if name not in pins:
            if _installed(name):
                problems.append(f"{name} is installed but not pinned")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{name}=={pins[name]} is outside {req}")
    assert problems == []


def _installed(name: str) -> bool:
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def test_a_bad_pixel_decoder_names_the_gpl_extra(monkeypatch, tmp_path) -> None:
    pixels = pytest.importorskip("pydicom.pixels")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLosslessSV1, UltrasoundImageStorage, generate_uid

    from sonofm.data.dicom_io import NO_DECODER, read_dicom_frame

    meta = FileMetaDataset()
    meta.TransferSyntaxUID, meta.MediaStorageSOPClassUID = JPEGLosslessSV1, UltrasoundImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset = Dataset()
    dataset.file_meta = meta
    dataset.Rows = dataset.Columns = 8
    dataset.SamplesPerPixel, dataset.BitsAllocated, dataset.BitsStored = 1, 8, 8
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.PixelData = encapsulate([bytes(64)])
    dataset.save_as(tmp_path / "lossless.dcm", enforce_file_format=True)

    def no_decoder(*args, **kwargs):
        raise RuntimeError(f"Unable to decompress 'JPEG Lossless' pixel data because all {NO_DECODER}:\n\tpylibjpeg")

    monkeypatch.setattr(pixels, "pixel_array", no_decoder)
    with pytest.raises(SonofmError, match=r"JPEG Lossless.*GPL-3 `jpeg-gpl` extra.*'sonofm\[jpeg-gpl\]'$"):
        read_dicom_frame(tmp_path / "lossless.dcm")


def base_environment(where: Path) -> Path:
    """The python of a virtual environment holding this one's packages less those of every extra (the base
    install): a venv without pip whose site-packages links to this one's entries that only extras own."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    site = Path(sysconfig.get_paths()["purelib"])
    hidden = {canonicalize_name(req.name) for extra in EXTRAS if extra != "test" for req in requirements(extra)}
    owners: dict[str, set[str]] = defaultdict(set)
    for dist in importlib.metadata.distributions(path=[str(site)]):
        name = canonicalize_name(dist.metadata["Name"])
        for top in {file.parts[0] for file in dist.files or []} - {".."}:
            owners[top].add(name)
    target = next((where / "lib").glob("python3*/site-packages"))
    for entry in site.iterdir():
        if not owners.get(entry.name) or not owners[entry.name] <= hidden:
            (target / entry.name).symlink_to(entry)
    return where / "bin" / "python"


EXTRA_ONLY = ("sonofm.sam", "sonofm.tasks.sam", "sonofm.inference.sam_evaluate", "sonofm.export.onnx_", "sonofm.serve")
"""The modules that import an extra's library at their top (everything else imports without any extra)."""

DRIVER = """
import contextlib, importlib, io, json, pkgutil, sys
import sonofm
from sonofm.cli.main import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    results.append([code, err.getvalue()])
unimportable = []
for module in pkgutil.walk_packages(sonofm.__path__, "sonofm."):
    if not module.name.startswith(tuple(sys.argv[2:])) and not module.name.endswith("__main__"):
        try:
            importlib.import_module(module.name)
        except ModuleNotFoundError as error:
            unimportable.append(f"{module.name} imports {error.name}")
print("RESULTS=" + json.dumps([results, unimportable]))
"""


def test_base_install_fine_tunes_imports_and_names_the_missing_extras(phantom_set, tmp_path) -> None:
    python = base_environment(tmp_path / "env")
    phantom = phantom_set(n_per_class=8, size=64, seed=3)
    run = tmp_path / "run"
    (tmp_path / "dicom" / "a").mkdir(parents=True)
    (tmp_path / "dicom" / "a" / "x.dcm").write_bytes(b"\0" * 132)
    (tmp_path / "clip.mp4").write_bytes(b"\0" * 64)
    commands = [
        ["finetune", "cls", "--data", str(phantom / "cls"), "--out", str(run), *FAST],
        ["predict", "--run", str(run), "--input", str(phantom / "cls" / "cyst"), "--out", str(tmp_path / "pred"),
         "--no-progress"],
        ["sam", "finetune", "--data", str(phantom / "seg"), "--out", str(tmp_path / "sam")],
        ["export", "--run", str(run), "--format", "onnx", "--out", str(tmp_path / "model.onnx")],
        ["embed", "--run", str(run), "--input", str(phantom / "cls" / "cyst"), "--out", str(tmp_path / "e.parquet")],
        ["data", "check", str(tmp_path / "dicom")],
        ["predict", "--run", str(run), "--input", str(tmp_path / "clip.mp4"), "--out", str(tmp_path / "p2")],
        ["serve", "--run", str(run), "--port", "0"],
    ]
    done = subprocess.run([str(python), "-c", DRIVER, json.dumps(commands), *EXTRA_ONLY], capture_output=True,
                          text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results, unimportable = json.loads(re.search(r"^RESULTS=(.*)$", done.stdout, re.M)[1])
    assert unimportable == []
    assert [code for code, _ in results[:2]] == [0, 0], results
    assert (run / "metrics.json").is_file() and (tmp_path / "pred" / "predictions.csv").is_file()
    sam, onnx, parquet, dicom, video, serve = results[2:]
    assert sam == [2, "sonofm: error: sonofm sam needs the `sam` extra: pip install 'sonofm[sam]'\n"]
    assert not (tmp_path / "sam").exists()
    assert serve == [2, "sonofm: error: sonofm serve needs the `serve` extra: pip install 'sonofm[serve]'\n"]
    for (code, err), extra in zip((onnx, parquet, dicom, video), ("onnx", "parquet", "dicom", "video"), strict=True):
        assert code == 2 and err.startswith("sonofm: error: ") and err.count("\n") == 1, err
        assert err.endswith(f"needs the `{extra}` extra: pip install 'sonofm[{extra}]'\n"), err
