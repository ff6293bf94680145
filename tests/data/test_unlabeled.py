"""Unlabeled image pools: recursive scans, content de-duplication, skipped files, errors, the pretraining dataset."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sonofm.data.sampling import SeededEpochSampler
from sonofm.data.unlabeled import PretrainImageDataset, scan_image_folders
from sonofm.errors import SonofmError


def png(path: Path, value: int, size: tuple[int, int] = (24, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)
    return path


@pytest.fixture
def two_folders(tmp_path: Path) -> tuple[Path, Path]:
    """``a/`` with nested images, a duplicate, a hidden file, a non-image and a fake PNG; ``b/`` with a copy of a."""
    a, b = tmp_path / "a", tmp_path / "b"
    png(a / "x.png", 10)
    png(a / "deep" / "er" / "y.PNG", 20)
    Image.fromarray(np.full((16, 16, 3), 30, np.uint8)).save(a / "deep" / "z.jpg")
    (a / "deep" / "x_copy.png").write_bytes((a / "x.png").read_bytes())  # same bytes, another name
    png(a / ".hidden.png", 40)
    png(a / ".cache" / "w.png", 50)
    (a / "notes.txt").write_text("not an image")
    (a / "fake.png").write_text("not a png either")
    (b / "sub").mkdir(parents=True)
    (b / "sub" / "y_again.png").write_bytes((a / "deep" / "er" / "y.PNG").read_bytes())  # another folder
    png(b / "v.bmp", 60)
    return a, b


def test_scan_finds_nested_images_and_skips_duplicates_and_unreadable(two_folders):
    a, b = two_folders
    pool = scan_image_folders([a, str(b)])
    # sorted per folder, the first of equal files kept: a/deep/x_copy.png sorts before a/x.png
    assert pool.files == [a / "deep" / "er" / "y.PNG", a / "deep" / "x_copy.png", a / "deep" / "z.jpg", b / "v.bmp"]
    assert pool.found == 7 and pool.duplicates == 2 and pool.folders == 2
    assert [path for path, _ in pool.skipped] == [a / "fake.png"]
    assert "not an image" in pool.skipped[0][1]
    assert pool.summary() == "4 images from 2 folders (2 duplicates by content skipped, 1 unreadable skipped)"
    assert scan_image_folders([a, b], progress=True).files == pool.files  # deterministic


def test_scan_errors_name_the_path(tmp_path):
    (tmp_path / "empty" / "nested").mkdir(parents=True)
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    png(tmp_path / "good" / "a.png", 1)
    with pytest.raises(SonofmError, match=rf"^no image files in {tmp_path / 'empty'} \(looked for \.png, "):
        scan_image_folders([tmp_path / "good", tmp_path / "empty"])
    with pytest.raises(SonofmError, match=rf"^image folder not found \(or not a folder\): {tmp_path / 'absent'}$"):
        scan_image_folders([tmp_path / "absent"])
    with pytest.raises(SonofmError, match=r"not a folder\): .*a\.png$"):
        scan_image_folders([tmp_path / "good" / "a.png"])
    with pytest.raises(SonofmError, match="no image folders given"):
        scan_image_folders([])


def test_dataset_items_are_normalised_and_deterministic_per_key(two_folders):
    pool = scan_image_folders(list(two_folders))
    dataset = PretrainImageDataset(pool.files, img_size=16)
    assert len(dataset) == 4
    keys = list(SeededEpochSampler(len(dataset), seed=3))
    image = dataset[keys[0]]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert torch.equal(dataset[keys[0]], image)
    assert torch.equal(dataset[(1, 7)], dataset[(1, 7)])
    evaluation = PretrainImageDataset(pool.files, img_size=16, train=False)
    assert torch.equal(evaluation[2], evaluation[(2, 99)])


def test_dataset_names_a_corrupt_file(tmp_path):
    path = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header survives, the pixels do not
    pool = scan_image_folders([tmp_path])
    assert pool.files == [path]
    with pytest.raises(SonofmError, match=rf"cannot read image {path}: "):
        PretrainImageDataset(pool.files, img_size=16)[0]


def test_mask_folders_are_not_pretraining_images(tmp_path):
    import numpy as np
    from PIL import Image

    from sonofm.data.unlabeled import scan_image_folders

    for folder, value in (("images", 100), ("masks", 1), ("labels", 2)):
        (tmp_path / "seg" / folder).mkdir(parents=True)
        Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(tmp_path / "seg" / folder / "a.png")
    pool = scan_image_folders([tmp_path / "seg"])
    assert pool.files == [tmp_path / "seg" / "images" / "a.png"]
