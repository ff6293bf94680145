"""Reading images and masks: formats, bit depths, channel handling, and one clear error per bad file."""

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sonofm.data.image_io import IMAGE_EXTENSIONS, image_size, read_image, read_mask, unique_ids
from sonofm.errors import SonofmError

GRAY = np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)


def save(path: Path, image: Image.Image | np.ndarray) -> Path:
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(path)
    return path


def test_gray_png_is_replicated_to_three_channels(tmp_path):
    image = read_image(save(tmp_path / "a.png", GRAY))
    assert image.dtype == np.uint8 and image.shape == (12, 16, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[:, :, channel], GRAY)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_is_scaled_over_the_full_range(tmp_path, suffix):
    wide = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    image = read_image(save(tmp_path / f"a{suffix}", wide))
    np.testing.assert_array_equal(image[0, :, 0], [0, 1, 128, 255])


def test_rgba_drops_alpha_and_keeps_colours(tmp_path):
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 0
    image = read_image(save(tmp_path / "a.png", rgba))
    assert image.shape == (4, 5, 3)
    np.testing.assert_array_equal(image[0, 0], [10, 20, 30])


def test_palette_is_expanded(tmp_path):
    palette_image = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), mode="P")
    palette_image.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    image = read_image(save(tmp_path / "a.png", palette_image))
    np.testing.assert_array_equal(image[0, 1], [200, 100, 50])


def test_bmp_rgb_is_exact_and_jpeg_is_close(tmp_path):
    rgb = np.stack([GRAY, 255 - GRAY, GRAY // 2], axis=2)
    np.testing.assert_array_equal(read_image(save(tmp_path / "a.bmp", rgb)), rgb)
    flat = np.full((16, 16), 120, dtype=np.uint8)
    jpeg = read_image(save(tmp_path / "a.jpg", flat))
    assert jpeg.shape == (16, 16, 3) and np.abs(jpeg.astype(int) - 120).max() <= 2


def test_truncated_file_fails_naming_it(tmp_path):
    path = save(tmp_path / "full.png", np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    cut = tmp_path / "cut.png"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SonofmError, match=r"cut\.png.*truncated"):
        read_image(cut)
    with pytest.raises(SonofmError, match=r"mask .*cut\.png"):
        read_mask(cut)


def test_unreadable_missing_and_unsupported_files(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(SonofmError, match=r"junk\.png: not an image file"):
        read_image(junk)
    with pytest.raises(SonofmError, match=r"nope\.png: file not found"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(SonofmError, match=r"a\.ppm: unsupported format PPM"):
        read_image(save(tmp_path / "a.ppm", GRAY))


def test_mask_ids_are_kept_and_binary_255_becomes_one(tmp_path):
    ids = np.array([[0, 1, 2], [3, 0, 1]], dtype=np.uint8)
    mask = read_mask(save(tmp_path / "ids.png", ids))
    assert mask.dtype == np.int64
    np.testing.assert_array_equal(mask, ids)
    np.testing.assert_array_equal(read_mask(save(tmp_path / "b.png", ids.astype(bool) * np.uint8(255))),
                                  ids.astype(bool))
    np.testing.assert_array_equal(read_mask(save(tmp_path / "full.png", np.full((2, 2), 255, np.uint8))), 1)
    mixed = np.array([[0, 1, 255]], dtype=np.uint8)  # not exactly {0, 255}: left for validation to flag
    np.testing.assert_array_equal(read_mask(save(tmp_path / "mixed.png", mixed)), mixed)


def test_mask_modes_palette_one_bit_sixteen_bit(tmp_path):
    palette = Image.fromarray(np.array([[0, 2], [1, 2]], dtype=np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    np.testing.assert_array_equal(read_mask(save(tmp_path / "p.png", palette)), [[0, 2], [1, 2]])
    one_bit = Image.fromarray(np.array([[0, 255], [255, 0]], dtype=np.uint8)).convert("1")
    np.testing.assert_array_equal(read_mask(save(tmp_path / "one.png", one_bit)), [[0, 1], [1, 0]])
    wide = np.array([[0, 300]], dtype=np.uint16)
    np.testing.assert_array_equal(read_mask(save(tmp_path / "wide.png", wide)), [[0, 300]])


def test_rgb_mask_accepted_only_with_equal_channels(tmp_path):
    gray_rgb = np.repeat(np.array([[0, 255], [255, 0]], dtype=np.uint8)[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(read_mask(save(tmp_path / "same.png", gray_rgb)), [[0, 1], [1, 0]])
    colour = gray_rgb.copy()
    colour[0, 0] = [255, 0, 0]
    with pytest.raises(SonofmError, match=r"mask .*colour\.png is RGB with distinct channels; masks must be single"):
        read_mask(save(tmp_path / "colour.png", colour))


def test_image_size_reads_the_header(tmp_path):
    assert image_size(save(tmp_path / "a.png", GRAY)) == (16, 12)
    with pytest.raises(SonofmError, match="missing.png"):
        image_size(tmp_path / "missing.png")


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose checksummed header declares ``width`` x ``height`` pixels, with almost no pixel data."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_huge_declared_size_is_refused_by_every_reader_in_one_line(tmp_path):
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_claiming(100_000, 100_000))
    for read in (read_image, read_mask, image_size):  # image_size let Pillow's DecompressionBombError escape
        with pytest.raises(SonofmError, match=rf"^cannot read (image|mask) {huge}: too many pixels"):
            read(huge)


@pytest.mark.parametrize("fmt, position, reader", [
    ("TIFF", 72, read_image),  # escaped as TypeError ('IFDRational' object cannot be interpreted as an integer)
    ("TIFF", 12, image_size),  # escaped as ValueError (Invalid dimensions)
    ("TIFF", 21, image_size),  # escaped as DecompressionBombError
    ("PNG", 11, image_size),  # escaped as ValueError (Truncated IHDR chunk)
])
def test_one_flipped_bit_gives_one_line_naming_the_file(tmp_path, fmt, position, reader):
    path = save(tmp_path / f"flipped.{fmt.lower()}", GRAY)
    data = bytearray(path.read_bytes())
    data[position] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(SonofmError) as refused:
        reader(path)
    assert str(refused.value).startswith(f"cannot read image {path}: ") and "\n" not in str(refused.value)


def test_unique_ids_and_extensions():
    assert unique_ids(np.array([[3, 0], [3, 1]])) == [0, 1, 3]
    assert set(IMAGE_EXTENSIONS) >= {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
