"""`sonofm embed`: npz and parquet outputs, identical images give identical embeddings, bad files fail in one line."""

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from sonofm.cli.main import main
from sonofm.data.pack_writer import pack_images
from sonofm.data.phantom import write_phantom_dataset
from sonofm.inference import embed as embed_module
from sonofm.models import create_backbone, list_backbones
from sonofm.models.weights import save_backbone_weights


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = write_phantom_dataset(tmp_path_factory.mktemp("phantom"), n_per_class=2, size=40, seed=1,
                                 frames_per_group=1)
    folder = root / "cls" / "cyst"
    first = sorted(folder.glob("*.png"))[0]
    shutil.copy(first, folder / "zz_copy.png")
    return folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "backbone.safetensors"
    save_backbone_weights(create_backbone("usfm_vit_tiny_patch16", img_size=32), path)
    return path


@pytest.fixture(scope="module")
def npz(weights, images, tmp_path_factory):
    out = tmp_path_factory.mktemp("embed") / "emb.npz"
    assert main(["embed", "--weights", str(weights), "--input", str(images), "--out", str(out), "--no-progress"]) == 0
    return out


def test_npz_holds_one_embedding_per_image(npz):
    data = np.load(npz)
    assert data["embeddings"].shape == (3, 192) and data["embeddings"].dtype == np.float32
    names = list(data["names"])
    assert names[-1] == "zz_copy.png" and len(data["paths"]) == 3
    original = names.index(sorted(names)[0])
    # equal up to float rounding: a row's matmul blocking depends on its place in the batch
    np.testing.assert_allclose(data["embeddings"][original], data["embeddings"][-1], atol=1e-5)
    assert not np.allclose(data["embeddings"][0], data["embeddings"][1])


def test_parquet_matches_npz_and_pools_differ(weights, images, npz, tmp_path, capsys):
    base = ["embed", "--weights", str(weights), "--input", str(images), "--no-progress", "--batch-size", "2"]
    assert main([*base, "--out", str(tmp_path / "emb.parquet")]) == 0
    assert "3 embeddings of dimension 192" in capsys.readouterr().out
    assert main([*base, "--out", str(tmp_path / "cls.npz"), "--pool", "cls"]) == 0
    table = pq.read_table(tmp_path / "emb.parquet")
    assert table.column_names == ["path", "name", "embedding"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 192)  # fixed size: no 32-bit offsets
    parquet = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    mean = np.load(npz)
    np.testing.assert_allclose(parquet, mean["embeddings"], atol=1e-5)
    assert table.column("name").to_pylist() == list(mean["names"])
    assert not np.allclose(np.load(tmp_path / "cls.npz")["embeddings"], mean["embeddings"])


def test_bad_weights_file_is_one_line_error(images, tmp_path, cli_error):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    message = cli_error(["embed", "--weights", str(bad), "--input", str(images), "--out", str(tmp_path / "e.npz")])
    assert "bad.safetensors" in message


def test_unnamed_architecture_asks_for_model(images, tmp_path, cli_error):
    plain = tmp_path / "plain.pth"
    torch.save(create_backbone("usfm_vit_tiny_patch16", img_size=32).state_dict(), plain)
    message = cli_error(["embed", "--weights", str(plain), "--input", str(images), "--out", str(tmp_path / "e.npz")])
    assert "pass --model" in message
    assert main(["embed", "--weights", str(plain), "--model", "usfm_vit_tiny_patch16", "--img-size", "32",
                 "--input", str(images), "--out", str(tmp_path / "e.npz"), "--no-progress"]) == 0
    assert np.load(tmp_path / "e.npz")["embeddings"].shape == (3, 192)


def test_model_hint_names_a_command_that_lists_the_architectures(images, tmp_path, cli_error, capsys):
    plain = tmp_path / "plain.pth"
    torch.save(create_backbone("resnet18", img_size=32).state_dict(), plain)
    message = cli_error(["embed", "--weights", str(plain), "--input", str(images), "--out", str(tmp_path / "e.npz")])
    hinted = message.split("see `")[1].split("`")[0].split()
    assert hinted[0] == "sonofm"
    assert main(hinted[1:]) == 0
    listed = capsys.readouterr().out.splitlines()
    names = listed[: listed.index("")]  # the built-ins, then a paragraph on timm/<name>
    assert names == list_backbones() and "resnet18" in names


def test_wrong_suffix_is_refused(weights, images, tmp_path, cli_error):
    message = cli_error(["embed", "--weights", str(weights), "--input", str(images), "--out", str(tmp_path / "e.csv")])
    assert ".npz or .parquet" in message


def test_an_interrupted_embedding_resumes_from_its_finished_parts(weights, images, npz, tmp_path, monkeypatch):
    """Parts of 2 images: a crash in the second part keeps the first; the rerun embeds only the rest, gives the
    uninterrupted result and removes the scratch folder."""
    monkeypatch.setattr(embed_module, "PART_IMAGES", 2)
    real = embed_module.embed_images
    calls = []

    def crashing(*args, positions):
        calls.append(len(positions))
        if len(calls) == 2:
            raise RuntimeError("simulated crash")
        return real(*args, positions=positions)

    out = tmp_path / "emb.npz"
    monkeypatch.setattr(embed_module, "embed_images", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        embed_module.embed(images, out, weights=weights, progress=False)
    partial = tmp_path / "emb.npz.partial"
    assert sorted(path.name for path in partial.iterdir()) == ["job.json", "part_000000.npy"]
    calls.clear()
    monkeypatch.setattr(embed_module, "embed_images",
                        lambda *args, positions: calls.append(len(positions)) or real(*args, positions=positions))
    embed_module.embed(images, out, weights=weights, progress=False)
    total = len(np.load(npz)["names"])
    assert sum(calls) == total - 2 and not partial.exists()
    np.testing.assert_allclose(np.load(out)["embeddings"], np.load(npz)["embeddings"], atol=1e-5)


def test_a_scratch_folder_of_another_job_is_refused(weights, images, tmp_path, cli_error):
    partial = tmp_path / "emb.npz.partial"
    partial.mkdir()
    (partial / "job.json").write_text('{"inputs": "something else"}')
    message = cli_error(["embed", "--weights", str(weights), "--input", str(images), "--out",
                         str(tmp_path / "emb.npz"), "--no-progress"])
    assert "emb.npz.partial holds a partial embedding of other inputs or settings" in message


def test_a_packed_folder_embeds_as_its_images(weights, images, npz, tmp_path):
    pack_images([images], tmp_path / "pack", progress=False)
    assert main(["embed", "--weights", str(weights), "--input", str(tmp_path / "pack"), "--out",
                 str(tmp_path / "packed.npz"), "--no-progress"]) == 0
    packed, folder = np.load(tmp_path / "packed.npz"), np.load(npz)
    kept = [list(folder["paths"]).index(path) for path in packed["paths"]]  # the pack keeps one of equal files
    assert len(kept) == len(folder["paths"]) - 1
    np.testing.assert_allclose(packed["embeddings"], folder["embeddings"][kept], atol=1e-5)
