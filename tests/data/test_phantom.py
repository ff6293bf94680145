"""The phantom generator: determinism, geometry, masks, lesion physics, speckle, dataset layout.

Rendering speed is measured by benchmarks/phantom_throughput.py, not here."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation, binary_erosion, uniform_filter
from scipy.spatial import ConvexHull

from sonofm.data import phantom
from sonofm.data.phantom import (
    PHANTOM_CLASSES,
    PHANTOM_MASK_CLASSES,
    draw_subject,
    perturb_subject,
    render_phantom,
    render_subject,
    sector_mask,
    write_phantom_dataset,
    writer,
)
from sonofm.errors import SonofmError

LESION_KINDS = ("cyst", "solid_round", "irregular")
N_PER_KIND = 10


def _render(seed: int, kind: str, size: int = 128) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image, mask and fan mask of one phantom."""
    rng = np.random.default_rng(seed)
    subject = draw_subject(rng, kind)
    image, mask = render_subject(subject, rng, size)
    return image, mask, sector_mask(subject.fan, size)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """N_PER_KIND rendered phantoms of every kind at 128 px, shared by the statistics tests."""
    return {kind: [_render(100 + i, kind) for i in range(N_PER_KIND)] for kind in PHANTOM_CLASSES}


def _solidity(region: np.ndarray) -> float:
    """Area / convex-hull area of a boolean region, counting pixels as unit squares."""
    pixels = np.argwhere(region).astype(float)
    corners = np.concatenate([pixels + offset for offset in ([0, 0], [0, 1], [1, 0], [1, 1])])
    return float(region.sum() / ConvexHull(corners).volume)


def _surroundings(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Tissue pixels in a ring 3-8 px around the lesion (not layer, inside the fan)."""
    lesion = mask == 1
    ring = binary_dilation(lesion, iterations=8) & ~binary_dilation(lesion, iterations=2)
    return ring & (mask == 0) & (image > 0)


def _posterior_ratio(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean brightness just below the lesion over that beside it at the same depths."""
    rows, cols = np.nonzero(mask == 1)
    left, right, bottom = cols.min(), cols.max(), rows.max()
    width = right - left + 1
    band = image[bottom + 3 : bottom + 15].astype(float)
    below = band[:, left + width // 4 : right - width // 4 + 1]
    beside = np.concatenate([band[:, max(left - width, 0) : left - 2], band[:, right + 3 : right + width + 1]], 1)
    return below[below > 0].mean() / beside[beside > 0].mean()


def test_class_names() -> None:
    assert PHANTOM_CLASSES == ("none", "cyst", "solid_round", "irregular")
    assert PHANTOM_MASK_CLASSES == ("background", "lesion", "layer")


def test_same_seed_same_image_other_seed_other_image() -> None:
    first = render_phantom(np.random.default_rng(7), "irregular", 64)
    again = render_phantom(np.random.default_rng(7), "irregular", 64)
    other = render_phantom(np.random.default_rng(8), "irregular", 64)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])
    assert not np.array_equal(first[1], other[1])


@pytest.mark.parametrize("size", [32, 57, 128])
def test_shapes_dtypes_and_values(size: int) -> None:
    image, mask = render_phantom(np.random.default_rng(0), "cyst", size)
    assert image.shape == mask.shape == (size, size)
    assert image.dtype == mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1, 2}
    assert image.max() > 100 and (image > 0).mean() > 0.25


def test_zero_outside_fan_and_mostly_nonzero_inside(rendered) -> None:
    for kind, items in rendered.items():
        for image, mask, fan in items:
            assert not image[~fan].any() and not mask[~fan].any(), kind
            assert (image[fan] > 0).mean() > 0.9, kind
            assert 0.3 < fan.mean() < 0.85
            assert not (fan[0].any() or fan[-1].any() or fan[:, 0].any() or fan[:, -1].any())


def test_fan_geometry_varies_between_subjects(rendered) -> None:
    fans = [fan for _, _, fan in rendered["none"]]
    areas = [fan.sum() for fan in fans]
    assert len(set(areas)) == len(fans)
    assert np.std(areas) > 200


def test_masks_hold_lesion_only_for_lesion_kinds_and_layer_in_most(rendered) -> None:
    for kind, items in rendered.items():
        for _, mask, _ in items:
            assert set(np.unique(mask)) <= {0, 1, 2}
            lesion_pixels = (mask == 1).sum()
            assert lesion_pixels == 0 if kind == "none" else lesion_pixels > 60, kind
    with_layer = [(mask == 2).any() for items in rendered.values() for _, mask, _ in items]
    assert 0.7 <= np.mean(with_layer) < 1.0


@pytest.mark.parametrize("kind", LESION_KINDS)
def test_lesions_lie_inside_the_fan_in_every_frame(kind: str) -> None:
    rng = np.random.default_rng(21)
    for _ in range(40):
        subject = draw_subject(rng, kind)
        for frame in (subject, perturb_subject(subject, rng)):
            x, y = frame.fan.pixel_coordinates(64)
            lesion = frame.lesion.level(x, y) < 1
            assert lesion.sum() > 30 and not (lesion & ~sector_mask(frame.fan, 64)).any()


def test_lesion_echogenicity_by_kind(rendered) -> None:
    contrast = {
        kind: np.mean([image[mask == 1].mean() / image[_surroundings(image, mask)].mean() for image, mask, _ in items])
        for kind, items in rendered.items()
        if kind != "none"
    }
    assert contrast["cyst"] < 0.5
    assert contrast["cyst"] + 0.15 < contrast["solid_round"] < 0.85
    assert contrast["irregular"] < 0.85
    cores = [image[binary_erosion(mask == 1, iterations=2)] for image, mask, _ in rendered["cyst"]]
    assert np.median(np.concatenate(cores)) < 20


def test_posterior_enhancement_behind_cysts_and_shadow_behind_irregular(rendered) -> None:
    posterior = {kind: np.mean([_posterior_ratio(i, m) for i, m, _ in rendered[kind]]) for kind in LESION_KINDS}
    assert posterior["cyst"] > 1.05
    assert 0.9 < posterior["solid_round"] < posterior["cyst"]
    assert posterior["irregular"] < 0.8


def test_irregular_lesions_are_less_convex(rendered) -> None:
    solidity = {kind: [_solidity(mask == 1) for _, mask, _ in rendered[kind]] for kind in LESION_KINDS}
    assert min(solidity["solid_round"]) > 0.88
    assert np.mean(solidity["irregular"]) < np.mean(solidity["solid_round"]) - 0.1


def test_speckle_statistics_in_homogeneous_tissue(rendered) -> None:
    ratios = []
    for image, mask, fan in rendered["none"]:
        tissue = binary_erosion(fan & (mask == 0), iterations=6)
        pixels = image.astype(float)
        mean = uniform_filter(pixels, 9)
        std = np.sqrt(np.maximum(uniform_filter(pixels**2, 9) - mean**2, 0.0))
        ratios.append(np.median(std[tissue] / mean[tissue]))
    assert 0.12 < np.mean(ratios) < 0.35
    assert all(0.08 < ratio < 0.45 for ratio in ratios)


def test_mean_intensity_alone_does_not_tell_the_classes() -> None:
    """A nearest-class-mean classifier on the mean fan brightness, scored on its own training set, stays near chance."""
    means = []
    for kind in PHANTOM_CLASSES:
        images = [render_phantom(np.random.default_rng(300 + i), kind, 64)[0] for i in range(12)]
        means.append([image[image > 0].mean() for image in images])
    centres = np.mean(means, axis=1)
    predicted = np.abs(np.asarray(means)[..., None] - centres).argmin(-1)
    assert np.mean(predicted == np.arange(len(PHANTOM_CLASSES))[:, None]) < 0.5


def test_perturbed_frames_show_the_same_subject() -> None:
    rng = np.random.default_rng(11)
    subject = draw_subject(rng, "solid_round")
    _, base_mask = render_subject(subject, rng, 96)
    for _ in range(3):
        moved = perturb_subject(subject, rng)
        assert moved.fan == subject.fan
        _, mask = render_subject(moved, rng, 96)
        intersection = ((mask == 1) & (base_mask == 1)).sum()
        union = ((mask == 1) | (base_mask == 1)).sum()
        assert 0.6 < intersection / union < 1.0
        assert abs(moved.gain_db - subject.gain_db) < 5


@pytest.mark.parametrize(
    "call",
    [
        lambda: render_phantom(np.random.default_rng(0), "tumour"),
        lambda: render_phantom(np.random.default_rng(0), "cyst", size=31),
    ],
)
def test_bad_render_arguments(call) -> None:
    with pytest.raises(SonofmError):
        call()


@pytest.mark.parametrize(
    "kwargs", [{"n_per_class": 0}, {"size": 16}, {"frames_per_group": 0}, {"seed": -1}, {"n_per_class": 2.5}]
)
def test_bad_dataset_arguments(tmp_path: Path, kwargs: dict) -> None:
    key = next(iter(kwargs))
    with pytest.raises(SonofmError, match=key):
        write_phantom_dataset(tmp_path / "set", **kwargs)
    assert list(tmp_path.iterdir()) == []


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_dataset_layout_counts_groups_and_rerun(tmp_path: Path) -> None:
    out = tmp_path / "phantom"
    assert write_phantom_dataset(out, n_per_class=5, size=40, seed=3, frames_per_group=2) == out
    assert sorted(p.name for p in out.iterdir()) == ["cls", "phantom.json", "seg"]
    assert list(tmp_path.iterdir()) == [out]

    for view in ("cls", "seg"):
        rows = _read_csv(out / view / "labels.csv")
        assert list(rows[0]) == ["name", "class", "group"]
        assert Counter(row["class"] for row in rows) == {kind: 5 for kind in PHANTOM_CLASSES}
        groups = Counter(row["group"] for row in rows)
        assert len(groups) == 12 and sorted(set(groups.values())) == [1, 2]
        assert all(row["name"].startswith(row["group"] + "_f") for row in rows)
        assert all(row["group"].startswith(row["class"] + "_g") for row in rows)
    assert "cyst_g001_f1" in {row["name"] for row in rows}

    for row in rows:
        cls_image = np.asarray(Image.open(out / "cls" / row["class"] / f"{row['name']}.png"))
        seg_image = Image.open(out / "seg" / "images" / f"{row['name']}.png")
        seg_mask = Image.open(out / "seg" / "masks" / f"{row['name']}.png")
        assert seg_image.mode == seg_mask.mode == "L" and seg_image.size == (40, 40)
        np.testing.assert_array_equal(cls_image, np.asarray(seg_image))
        assert (np.asarray(seg_mask) == 1).any() == (row["class"] != "none")
    assert sum(1 for _ in (out / "cls").rglob("*.png")) == 20
    assert len(list((out / "seg" / "masks").iterdir())) == 20

    manifest = json.loads((out / "phantom.json").read_text())
    assert manifest["version"] == phantom.PHANTOM_VERSION
    assert (manifest["n_per_class"], manifest["size"], manifest["seed"], manifest["frames_per_group"]) == (5, 40, 3, 2)

    files = sorted(out.rglob("*"))
    stamps = [path.stat().st_mtime_ns for path in files]
    assert write_phantom_dataset(out, n_per_class=5, size=40, seed=3, frames_per_group=2) == out
    assert sorted(out.rglob("*")) == files
    assert [path.stat().st_mtime_ns for path in files] == stamps


def test_dataset_frames_of_a_group_share_the_subject(tmp_path: Path) -> None:
    out = write_phantom_dataset(tmp_path / "set", n_per_class=4, size=64, seed=0, frames_per_group=4)
    masks = [np.asarray(Image.open(out / "seg" / "masks" / f"irregular_g000_f{frame}.png")) for frame in range(4)]
    images = [np.asarray(Image.open(out / "seg" / "images" / f"irregular_g000_f{frame}.png")) for frame in range(4)]
    lesions = [mask == 1 for mask in masks]
    for lesion, image in zip(lesions[1:], images[1:]):
        assert (lesion & lesions[0]).sum() / (lesion | lesions[0]).sum() > 0.5
        assert not np.array_equal(image, images[0])


def test_dataset_is_deterministic(tmp_path: Path) -> None:
    first = write_phantom_dataset(tmp_path / "a", n_per_class=2, size=32, seed=5)
    second = write_phantom_dataset(tmp_path / "b", n_per_class=2, size=32, seed=5)
    for path in sorted((first / "seg").rglob("*.png")):
        assert path.read_bytes() == (second / path.relative_to(first)).read_bytes()


def test_dataset_refuses_other_folders(tmp_path: Path) -> None:
    out = write_phantom_dataset(tmp_path / "set", n_per_class=1, size=32)
    with pytest.raises(SonofmError, match="set"):
        write_phantom_dataset(out, n_per_class=2, size=32)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "x.txt").write_text("mine")
    with pytest.raises(SonofmError, match="photos"):
        write_phantom_dataset(foreign, n_per_class=1, size=32)
    (tmp_path / "file").write_text("")
    with pytest.raises(SonofmError, match="file"):
        write_phantom_dataset(tmp_path / "file", n_per_class=1, size=32)
    with pytest.raises(SonofmError, match="inner"):
        write_phantom_dataset(tmp_path / "file" / "inner", n_per_class=1, size=32)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (write_phantom_dataset(empty, n_per_class=1, size=32) / "phantom.json").is_file()


def test_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing_render(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return render_subject(*args, **kwargs)

    monkeypatch.setattr(writer, "render_subject", failing_render)  # the name the writer looks up
    with pytest.raises(KeyboardInterrupt):
        write_phantom_dataset(tmp_path / "set", n_per_class=2, size=32)
    assert list(tmp_path.iterdir()) == []
