"""`sonofm data pack`: WebDataset tar shards of decoded images with an offset index; corrupt files listed, never
dropped silently; an interrupted pack resumes to the same bytes; pretraining reads a pack as it reads folders."""

import csv
import io
import json
import tarfile

import fsspec
import numpy as np
import pytest
from PIL import Image

from sonofm.cli.main import main
from sonofm.data import pack_writer
from sonofm.data import packed as packed_module
from sonofm.data.image_io import read_image
from sonofm.data.pack_writer import pack_images
from sonofm.data.packed import PackedImages, is_packed_folder
from sonofm.data.work_shard import Shard
from sonofm.errors import SonofmError


@pytest.fixture
def folders(tmp_path):
    """``liver/`` (5 grayscale PNGs, one nested, one truncated) and ``thyroid/`` (3 RGB PNGs)."""
    rng = np.random.default_rng(0)
    liver, thyroid = tmp_path / "liver", tmp_path / "thyroid"
    (liver / "nested").mkdir(parents=True)
    thyroid.mkdir()
    for index in range(4):
        Image.fromarray(rng.integers(0, 256, (40, 60), dtype=np.uint8)).save(liver / f"{index}.png")
    Image.fromarray(rng.integers(0, 256, (30, 30), dtype=np.uint8)).save(liver / "nested" / "n.png")
    for index in range(3):
        Image.fromarray(rng.integers(0, 256, (36, 24, 3), dtype=np.uint8)).save(thyroid / f"{index}.png")
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(liver / "zz_broken.png")
    (liver / "zz_broken.png").write_bytes((liver / "zz_broken.png").read_bytes()[:300])  # header fine, pixels not
    return [liver, thyroid]


def test_pack_holds_every_readable_image_and_lists_the_broken_one(folders, tmp_path):
    result = pack_images(folders, tmp_path / "pack", shard_size=3, progress=False)
    assert (result.images, result.shards, result.skipped) == (8, 3, 1)
    out = tmp_path / "pack"
    assert is_packed_folder(out)
    assert sorted(path.name for path in out.iterdir()) == ["index.npz", "metadata.csv", "pack.json",
                                                           "shard-000000.tar", "shard-000001.tar",
                                                           "shard-000002.tar", "skipped.csv"]
    with (out / "skipped.csv").open(newline="") as handle:
        skipped = list(csv.DictReader(handle))
    assert [row["path"].rsplit("/", 1)[-1] for row in skipped] == ["zz_broken.png"]
    assert "zz_broken.png" in skipped[0]["reason"]
    packed = PackedImages(out)
    with (out / "metadata.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(packed) == len(rows) == 8
    for position, row in enumerate(rows):
        assert np.array_equal(packed.read(position), read_image(row["path"]))
        assert int(row["source"]) == packed.sources[position] == (0 if "/liver/" in row["path"] else 1)
        assert len(row["blake2b"]) == 128
        assert packed.key(position) == row["key"]  # the tar member's key, kept past the skipped file
        assert packed.name(position).endswith(f"/shard-{int(row['key']) // 3:06d}.tar#{row['key']}")
        assert packed.size(position) == (int(row["width"]), int(row["height"])) == Image.open(row["path"]).size
    assert [packed.key(position) for position in range(5, 8)] == ["000000006", "000000007", "000000008"]
    assert packed.source_names == [str(folder) for folder in folders]


def test_shards_are_webdataset_tars_with_grayscale_kept_grayscale(folders, tmp_path):
    pack_images(folders, tmp_path / "pack", shard_size=100, progress=False)
    with tarfile.open(tmp_path / "pack" / "shard-000000.tar") as tar:
        names = tar.getnames()
        arrays = {name: np.load(io.BytesIO(tar.extractfile(name).read())) for name in names if name.endswith(".npy")}
        meta = json.loads(tar.extractfile(names[1]).read())
    assert names[:2] == ["000000000.npy", "000000000.json"] and meta["key"] == "000000000"
    shapes = sorted(array.shape for array in arrays.values())
    assert shapes == [(30, 30), (36, 24, 3), (36, 24, 3), (36, 24, 3), (40, 60), (40, 60), (40, 60), (40, 60)]


def test_resize_keeps_the_aspect_with_the_shorter_side_given(folders, tmp_path):
    pack_images(folders, tmp_path / "pack", img_size=20, progress=False)
    packed = PackedImages(tmp_path / "pack")
    assert sorted({packed.read(i).shape for i in range(len(packed))}) == [(20, 20, 3), (20, 30, 3), (30, 20, 3)]


def test_an_interrupted_pack_resumes_to_the_same_bytes(folders, tmp_path, monkeypatch):
    pack_images(folders, tmp_path / "straight", shard_size=3, progress=False)
    real = pack_writer._decoded
    calls = []

    def crash_in_third_shard(path, img_size):
        calls.append(path)
        if len(calls) == 7:
            raise RuntimeError("simulated crash")
        return real(path, img_size)

    monkeypatch.setattr(pack_writer, "_decoded", crash_in_third_shard)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pack_images(folders, tmp_path / "resumed", shard_size=3, progress=False)
    assert not is_packed_folder(tmp_path / "resumed")
    monkeypatch.setattr(pack_writer, "_decoded", real)
    calls.clear()
    monkeypatch.setattr(pack_writer, "_decoded", lambda *args: calls.append(args) or real(*args))
    pack_images(folders, tmp_path / "resumed", shard_size=3, progress=False)
    assert len(calls) == 3  # only the third shard was decoded again
    for name in ("shard-000000.tar", "shard-000002.tar", "metadata.csv", "skipped.csv", "pack.json"):
        assert (tmp_path / "resumed" / name).read_bytes().replace(b"/resumed", b"/straight") == \
            (tmp_path / "straight" / name).read_bytes().replace(b"/resumed", b"/straight"), name
    straight, resumed = np.load(tmp_path / "straight" / "index.npz"), np.load(tmp_path / "resumed" / "index.npz")
    assert all(np.array_equal(straight[key], resumed[key]) for key in ("shard", "offset", "length", "source"))


def test_a_finished_pack_and_other_inputs_are_refused(folders, tmp_path):
    pack_images(folders, tmp_path / "pack", progress=False)
    with pytest.raises(SonofmError, match="is already a finished pack"):
        pack_images(folders, tmp_path / "pack", progress=False)
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "files.txt").write_text(json.dumps({"inputs": ["elsewhere"], "files": []}))
    with pytest.raises(SonofmError, match="holds an unfinished pack of other folders"):
        pack_images(folders, tmp_path / "unfinished", progress=False)


def test_cli_pack_prints_one_line(folders, tmp_path, capsys):
    assert main(["data", "pack", *map(str, folders), "--out", str(tmp_path / "pack"), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("packed 8 images into 1 shards in ")


def test_shard_files_stay_under_the_open_file_limit(folders, tmp_path, monkeypatch):
    monkeypatch.setattr(packed_module, "OPEN_SHARDS", 2)
    pack_images(folders, tmp_path / "pack", shard_size=1, progress=False)
    packed = PackedImages(tmp_path / "pack")
    images = [packed.read(position) for position in range(len(packed))]  # 8 shards, at most 2 open
    assert len(packed._handles) == 2
    assert all(np.array_equal(packed.read(position), image) for position, image in enumerate(images))


def test_an_occupied_output_folder_is_refused(folders, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(SonofmError, match="holds other files; choose a new or empty folder"):
        pack_images(folders, tmp_path / "busy", progress=False)


def test_two_processes_pack_their_shards_and_the_last_joins(folders, tmp_path):
    pack_images(folders, tmp_path / "single", shard_size=3, progress=False)
    first = pack_images(folders, tmp_path / "sharded", shard_size=3, progress=False, shard=Shard(1, 2))
    assert not first.finished and not is_packed_folder(tmp_path / "sharded")
    assert sorted(path.name for path in (tmp_path / "sharded").glob("*.tar")) == ["shard-000001.tar"]
    second = pack_images(folders, tmp_path / "sharded", shard_size=3, progress=False, shard=Shard(0, 2))
    assert second.finished and (second.images, second.shards) == (8, 3)
    for name in ("shard-000000.tar", "shard-000001.tar", "shard-000002.tar", "metadata.csv", "skipped.csv",
                 "pack.json", "index.npz"):
        assert (tmp_path / "sharded" / name).read_bytes() == (tmp_path / "single" / name).read_bytes(), name
    assert sorted(path.name for path in (tmp_path / "sharded").iterdir()) == sorted(
        path.name for path in (tmp_path / "single").iterdir())


def test_a_single_process_takes_over_a_join_left_unfinished(folders, tmp_path):
    """A joiner killed after taking the lock: another sharded process leaves the join to it, a lone rerun takes over."""
    out = tmp_path / "killed"
    assert not pack_images(folders, out, shard_size=3, progress=False, shard=Shard(0, 2)).finished
    (out / "join.lock").write_text("")
    assert not pack_images(folders, out, shard_size=3, progress=False, shard=Shard(1, 2)).finished
    assert pack_images(folders, out, shard_size=3, progress=False).finished
    assert is_packed_folder(out) and not (out / "join.lock").exists()


def test_a_pack_in_an_object_store_reads_as_on_disk(folders, tmp_path):
    """Through fsspec (here its in-memory filesystem), by one ranged request per image: same pixels, sizes, paths."""
    pack_images(folders, tmp_path / "pack", shard_size=3, progress=False)
    store = fsspec.filesystem("memory")
    store.put(str(tmp_path / "pack"), f"/{tmp_path.name}/pack", recursive=True)
    url = f"memory://{tmp_path.name}/pack"
    local, remote = PackedImages(tmp_path / "pack"), PackedImages(url)
    assert is_packed_folder(url) and not is_packed_folder(f"memory://{tmp_path.name}/nothing")
    assert remote.original_paths() == local.original_paths()
    for position in range(len(local)):
        assert np.array_equal(remote.read(position), local.read(position))
        assert remote.size(position) == local.size(position)
        assert remote.name(position) == f"{url}/{local.name(position).rsplit('/', 1)[1]}"
    with pytest.raises(SonofmError, match="cannot read nosuchprotocol://bucket/pack: "):
        is_packed_folder("nosuchprotocol://bucket/pack")
