"""``--source-from TABLE.csv:COLUMN``: each image's source from its row (by path or by name), every image needs one,
and ``sonofm data pack`` stores the sources it gives."""

import csv

import numpy as np
import pytest
from PIL import Image

from sonofm.cli.main import main
from sonofm.data.pack_writer import pack_images
from sonofm.data.packed import PackedImages
from sonofm.data.source_table import SourceColumn
from sonofm.errors import SonofmError


@pytest.fixture
def archive(tmp_path):
    """Six grayscale images in two site folders; a table of organs by relative path and one by name."""
    rng = np.random.default_rng(0)
    organs = {"site_a/0.png": "liver", "site_a/1.png": "thyroid", "site_a/2.png": "liver",
              "site_b/3.png": "kidney", "site_b/4.png": "liver", "site_b/5.png": "thyroid"}
    for name in organs:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8)).save(tmp_path / name)
    write_table(tmp_path / "by_path.csv", ["path", "organ"], list(organs.items()))
    by_name = [(name.split("/")[1].removesuffix(".png"), organ, name.split("/")[0]) for name, organ in organs.items()]
    write_table(tmp_path / "by_name.csv", ["name", "organ", "site"], by_name)
    return tmp_path, organs


def write_table(path, header, rows):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def test_sources_come_from_the_column_by_path_or_by_name(archive):
    root, organs = archive
    files = [root / name for name in organs]
    ids, names = SourceColumn.parse(f"{root / 'by_path.csv'}:organ").source_ids(files)
    assert names == ["kidney", "liver", "thyroid"]
    assert [names[i] for i in ids] == list(organs.values())
    ids, names = SourceColumn.parse(f"{root / 'by_name.csv'}:site").source_ids(files)
    assert [names[i] for i in ids] == ["site_a"] * 3 + ["site_b"] * 3


def test_a_pack_stores_the_table_sources(archive, tmp_path):
    root, organs = archive
    result = pack_images([root / "site_a", root / "site_b"], tmp_path / "pack", progress=False,
                         source_from=f"{root / 'by_name.csv'}:organ")
    assert result.images == 6
    packed = PackedImages(tmp_path / "pack")
    assert packed.source_names == ["kidney", "liver", "thyroid"]
    assert packed.manifest["source_from"] == f"{root / 'by_name.csv'}:organ"
    assert [packed.source_names[source] for source in packed.sources] == \
        [organs[f"{path.parent.name}/{path.name}"] for path in packed.original_paths()]


def test_bad_tables_and_values_fail_with_one_line(archive, tmp_path, cli_error):
    root, organs = archive
    files = [root / name for name in organs]
    with pytest.raises(SonofmError, match="has no column 'scanner' \\(columns: path, organ\\)"):
        SourceColumn.parse(f"{root / 'by_path.csv'}:scanner").source_ids(files)
    write_table(tmp_path / "partial.csv", ["path", "organ"], list(organs.items())[:4])
    with pytest.raises(SonofmError, match="2 images have no organ in .*partial.csv .*e.g. .*site_b/4.png"):
        SourceColumn.parse(f"{tmp_path / 'partial.csv'}:organ").source_ids(files)
    write_table(tmp_path / "twice.csv", ["path", "organ"], [*organs.items(), ("site_a/0.png", "kidney")])
    with pytest.raises(SonofmError, match="line 8: 'site_a/0.png' is listed twice with different organ values"):
        SourceColumn.parse(f"{tmp_path / 'twice.csv'}:organ").source_ids(files)
    write_table(tmp_path / "nokey.csv", ["file", "organ"], [])
    with pytest.raises(SonofmError, match="needs a `path` or `name` column"):
        SourceColumn.parse(f"{tmp_path / 'nokey.csv'}:organ").source_ids(files)
    pack = ["data", "pack", str(root / "site_a"), "--out", str(tmp_path / "pack"), "--no-progress"]
    assert "--source-from must be `folder` or TABLE.csv:COLUMN, got 'organ'" in cli_error(
        [*pack, "--source-from", "organ"])
    assert "cannot read --source-from table" in cli_error([*pack, "--source-from", f"{tmp_path / 'none.csv'}:organ"])
    assert main([*pack, "--source-from", f"{root / 'by_path.csv'}:organ"]) == 0  # the failed starts left nothing
