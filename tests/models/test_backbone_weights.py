"""Loading weights: the official USFM layout at 224 and 512 px, containers and prefixes, refusals, safetensors."""

import zipfile

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sonofm.errors import SonofmError
from sonofm.models import UsfmViT, create_backbone, load_backbone_weights, save_backbone_weights

SHARED_TABLE_KEY = "rel_pos_bias.relative_position_bias_table"


@pytest.fixture(scope="module")
def usfm_base_224() -> UsfmViT:
    return create_backbone("usfm_vit_base_patch16")


@pytest.fixture(scope="module")
def usfm_base_512() -> UsfmViT:
    return create_backbone("usfm_vit_base_patch16", img_size=512)


def test_official_checkpoint_loads_at_224(usfm_base_224, official_checkpoint):
    path, official = official_checkpoint
    report = load_backbone_weights(usfm_base_224, path)
    assert report.missing == [] and report.unexpected == [] and report.resized == {}
    assert list(report.ignored) == [SHARED_TABLE_KEY]
    assert len(report.loaded) == len(official) - 1 + 12 == 198
    state = usfm_base_224.state_dict()
    assert sorted(report.loaded) == sorted(state)
    for key in ("mask_token", "cls_token", "norm.weight", "norm.bias", "blocks.11.attn.qkv.weight", "blocks.3.gamma_2"):
        assert torch.equal(state[key], official[key]), key
    for index in range(12):
        assert torch.equal(state[f"blocks.{index}.attn.relative_position_bias_table"], official[SHARED_TABLE_KEY])
    expected_numel = sum(t.numel() for t in official.values()) + 11 * official[SHARED_TABLE_KEY].numel()
    assert sum(t.numel() for t in state.values()) == expected_numel == 85_762_752


def test_official_checkpoint_loads_at_512(usfm_base_512, official_checkpoint):
    path, official = official_checkpoint
    report = load_backbone_weights(usfm_base_512, path)
    assert report.missing == [] and report.unexpected == []
    assert len(report.resized) == 12
    assert report.resized["blocks.0.attn.relative_position_bias_table"] == (
        "resampled from a 14x14 to a 32x32 patch grid"
    )
    shared = official[SHARED_TABLE_KEY]
    for block in usfm_base_512.blocks:
        table = block.attn.relative_position_bias_table.detach()
        assert table.shape == (3972, 12)
        assert torch.equal(table[-3:], shared[-3:])  # cls->token, token->cls, cls->cls
        assert torch.allclose(table[31 * 63 + 31], shared[13 * 27 + 13], atol=1e-5)  # offset (0, 0)
    assert torch.equal(usfm_base_512.mask_token.detach(), official["mask_token"])
    assert torch.equal(usfm_base_512.norm.weight.detach(), official["norm.weight"])
    assert usfm_base_512.blocks[5].attn.relative_position_index.shape == (1025, 1025)


@pytest.fixture
def tiny_official(tiny_usfm, official_layout):
    """A tiny random model and its weights in the official layout (one shared table)."""
    source = tiny_usfm(seed=3)
    return source, official_layout(source.state_dict())


def test_tiny_official_layout_gives_the_same_tokens(tmp_path, tiny_usfm, tiny_official):
    source, official = tiny_official
    for block in source.blocks[1:]:  # the official layout shares block 0's table
        block.attn.relative_position_bias_table.data.copy_(source.blocks[0].attn.relative_position_bias_table)
    path = tmp_path / "USFM_latest.pth"
    torch.save(official, path)
    target = tiny_usfm(seed=9)
    load_backbone_weights(target, path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(target.forward_tokens(x), source.forward_tokens(x))


def test_wrong_shape_names_the_key_and_both_shapes(tmp_path, tiny_usfm, tiny_official):
    _, official = tiny_official
    official["blocks.1.mlp.fc1.weight"] = torch.zeros(200, 64)
    path = tmp_path / "bad.pth"
    torch.save(official, path)
    with pytest.raises(SonofmError) as error:
        load_backbone_weights(tiny_usfm(), path)
    assert str(error.value) == (
        f"{path}: blocks.1.mlp.fc1.weight has shape (200, 64) in the file but (256, 64) in the model"
    )


def test_missing_block_names_the_keys(tmp_path, tiny_usfm, tiny_official):
    _, official = tiny_official
    truncated = {key: value for key, value in official.items() if not key.startswith("blocks.1.")}
    path = tmp_path / "short.pth"
    torch.save(truncated, path)
    with pytest.raises(SonofmError, match=r"does not fit backbone 'usfm_vit_base_patch16': missing 15 keys") as error:
        load_backbone_weights(tiny_usfm(), path)
    assert "blocks.1.gamma_1" in str(error.value) and "... 10 more" in str(error.value)
    assert "\n" not in str(error.value)


def test_unexpected_key_that_matters_is_refused(tmp_path, tiny_usfm, tiny_official):
    _, official = tiny_official
    official["blocks.2.norm1.weight"] = torch.ones(64)
    path = tmp_path / "deeper.pth"
    torch.save(official, path)
    with pytest.raises(SonofmError, match=r"unexpected 1 keys \(blocks\.2\.norm1\.weight\)"):
        load_backbone_weights(tiny_usfm(), path)


def test_harmless_extras_are_ignored_with_reasons(tmp_path, tiny_usfm, tiny_official):
    _, official = tiny_official
    del official["mask_token"]
    extras = {
        "blocks.0.attn.relative_position_index": torch.zeros(17, 17, dtype=torch.long),
        "head.weight": torch.zeros(3, 64),
        "fc_norm.bias": torch.zeros(64),
        "decoder.0.weight": torch.zeros(4, 4),
    }
    path = tmp_path / "extras.pth"
    torch.save(official | extras | {"version": 2}, path)
    model = tiny_usfm()
    before = model.mask_token.detach().clone()
    report = load_backbone_weights(model, path)
    assert report.missing == ["mask_token"] and torch.equal(model.mask_token, before)
    assert report.ignored == {
        SHARED_TABLE_KEY: "shared table, copied into every block's attn.relative_position_bias_table",
        "blocks.0.attn.relative_position_index": "recomputed from the patch grid",
        "head.weight": "task head, not part of the backbone",
        "fc_norm.bias": "task head, not part of the backbone",
        "decoder.0.weight": "pretraining decoder, not part of the backbone",
        "version": "not a tensor",
    }
    summary = report.summary()
    assert summary.splitlines()[0] == f"{path}: loaded 37 tensors, missing 1, unexpected 0, ignored 6, resized 0"
    assert "missing mask_token (only used by masked image modelling; keeps its initial value)" in summary
    assert "ignored 2 (task head, not part of the backbone), e.g. head.weight" in summary


@pytest.mark.parametrize(
    ("wrap", "outside"),
    [
        (lambda s: {"model": {f"encoder.{k}": v for k, v in s.items()} | {"decoder.w": torch.zeros(1)}, "epoch": 3},
         {"decoder.w": "outside the 'encoder.' prefix, not part of the backbone",
          "epoch": "checkpoint entry beside 'model'"}),
        (lambda s: {"state_dict": {f"model.backbone.{k}": v for k, v in s.items()} | {"model.head.w": torch.zeros(1)},
                    "global_step": 10},
         {"model.head.w": "outside the 'model.backbone.' prefix, not part of the backbone",
          "global_step": "checkpoint entry beside 'state_dict'"}),
        (lambda s: {"module": {f"module.backbone.{k}": v for k, v in s.items()}}, {}),
    ],
    ids=["simmim", "lightning", "data-parallel"],
)
def test_containers_and_prefixes_are_unwrapped(tmp_path, tiny_usfm, tiny_official, wrap, outside):
    source, official = tiny_official
    path = tmp_path / "wrapped.ckpt"
    torch.save(wrap(official), path)
    model = tiny_usfm(seed=5)
    report = load_backbone_weights(model, path)
    assert {k: v for k, v in report.ignored.items() if k != SHARED_TABLE_KEY} == outside
    assert torch.equal(model.blocks[1].attn.qkv.weight, source.blocks[1].attn.qkv.weight)


def test_unreadable_files_are_named(tmp_path, tiny_usfm):
    model = tiny_usfm()
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(SonofmError, match=rf"^cannot read weights file {corrupt}: "):
        load_backbone_weights(model, corrupt)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(SonofmError, match=rf"^cannot read weights file {broken}: "):
        load_backbone_weights(model, broken)
    with pytest.raises(SonofmError, match=rf"^weights file not found: {tmp_path / 'absent.pth'}$"):
        load_backbone_weights(model, tmp_path / "absent.pth")
    odd = tmp_path / "weights.npz"
    odd.write_bytes(b"")
    with pytest.raises(SonofmError, match=r"unsupported weights file type '\.npz'"):
        load_backbone_weights(model, odd)
    no_tensors = tmp_path / "meta.pt"
    torch.save({"epoch": 1, "config": {"lr": 0.1}}, no_tensors)
    with pytest.raises(SonofmError, match=r"no tensors found in weights file .*meta\.pt \(top-level keys: epoch,"):
        load_backbone_weights(model, no_tensors)


ACCEPTED = "accepted formats: safetensors (.safetensors) or tensors saved with torch.save (.pth, .pt, .bin, .ckpt"
UNSAFE_ADVICE = ("weights_only", "safe_globals", "trust the source")


def refusal(model, path) -> str:
    """The one-line SonofmError of loading ``path`` into ``model``, checked free of PyTorch's unsafe advice."""
    with pytest.raises(SonofmError) as caught:
        load_backbone_weights(model, path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert not any(words in message for words in UNSAFE_ADVICE), message
    return message


@pytest.mark.parametrize("seed", [17, 62])
def test_random_bytes_that_crashed_the_unpickler_give_one_line(tmp_path, tiny_usfm, seed):
    """Issue 25: these bytes raised IndexError (17) and KeyError (62) inside the weights-only unpickler."""
    data = np.random.default_rng(seed).bytes(4096)
    raw, as_pickle = tmp_path / "random.pth", tmp_path / "random_pickle.pt"
    raw.write_bytes(data)
    as_pickle.write_bytes(b"\x80\x02" + data)  # a pickle protocol header: the bytes reach torch's unpickler
    assert refusal(tiny_usfm(), raw).endswith(ACCEPTED + ": a state dict or a checkpoint holding one)")
    assert "it is not a readable PyTorch file (truncated or corrupt" in refusal(tiny_usfm(), as_pickle)


class WritesMarker:
    """Unpickling this would call ``open(marker, "w")``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("zip_format", [True, False])
def test_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path, tiny_usfm, zip_format):
    marker = tmp_path / "code_ran"
    path = tmp_path / "doctored.pth"
    torch.save({"state_dict": tiny_usfm().state_dict(), "hook": WritesMarker(marker)}, path,
               _use_new_zipfile_serialization=zip_format)
    message = refusal(tiny_usfm(), path)
    assert (f"{path}: it holds pickled Python objects, not just tensors (io.open); sonofm reads tensors only and "
            "never runs code from a weights file; accepted formats") in message
    assert not marker.exists()


def test_each_unreadable_file_says_what_it_is_not_and_which_formats_are_accepted(tmp_path, tiny_usfm):
    model, state = tiny_usfm(), tiny_usfm().state_dict()
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "folder.safetensors").mkdir()
    with zipfile.ZipFile(tmp_path / "archive.pth", "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")
    save_file(state, tmp_path / "full.safetensors")
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "full.safetensors").read_bytes()[:-100])
    torch.save(state, tmp_path / "full.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "full.pth").read_bytes()[:-100])
    expected = {"empty.pth": "the file is empty", "folder.safetensors": "it is a folder, not a file",
                "archive.pth": "it is a zip archive but not a PyTorch checkpoint (no data.pkl inside)",
                "cut.safetensors": "it is not a valid safetensors file (", "cut.pth": "it is a damaged zip archive ("}
    for name, what in expected.items():
        message = refusal(model, tmp_path / name)
        assert message.startswith(f"cannot read weights file {tmp_path / name}: {what}") and ACCEPTED in message


def test_format_is_read_from_the_content_not_the_extension(tmp_path, tiny_usfm):
    source = tiny_usfm(seed=3)
    save_file(source.state_dict(), tmp_path / "misnamed.pth")
    torch.save(source.state_dict(), tmp_path / "misnamed.safetensors")
    for name in ("misnamed.pth", "misnamed.safetensors"):
        model = tiny_usfm(seed=4)
        assert load_backbone_weights(model, tmp_path / name).missing == []
        assert torch.equal(model.cls_token, source.cls_token)


def test_safetensors_round_trip_gives_identical_outputs(tmp_path, tiny_usfm, tiny_vit):
    source = tiny_usfm(seed=7)
    path = tmp_path / "run" / "model.safetensors"
    save_backbone_weights(source, path)
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]  # no temporary file left
    with safe_open(path, framework="pt") as handle:
        assert handle.metadata() == {"sonofm_backbone": "usfm_vit_base_patch16", "img_size": "64"}
    loaded = create_backbone("usfm_vit_base_patch16", img_size=64, weights=path, **tiny_vit).eval()
    assert loaded.load_report.missing == [] and loaded.load_report.ignored == {}
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.forward_features(x), source.forward_features(x))


def test_own_file_at_another_img_size_resamples_tables(tmp_path, tiny_usfm, tiny_vit):
    source = tiny_usfm(img_size=64)  # 4x4 grid
    path = tmp_path / "model.safetensors"
    save_backbone_weights(source, path)
    loaded = create_backbone("usfm_vit_base_patch16", img_size=96, weights=path, **tiny_vit)  # 6x6 grid
    assert loaded.load_report.resized["blocks.1.attn.relative_position_bias_table"] == (
        "resampled from a 4x4 to a 6x6 patch grid"
    )
    table = loaded.blocks[1].attn.relative_position_bias_table.detach()
    original = source.blocks[1].attn.relative_position_bias_table.detach()
    assert table.shape == (11 * 11 + 3, 4)
    assert torch.equal(table[-3:], original[-3:])
    assert torch.allclose(table[5 * 11 + 5], original[3 * 7 + 3], atol=1e-5)


def test_timm_vit_position_embedding_is_resampled(tmp_path, tiny_vit):
    source = create_backbone("timm_vit_tiny_patch16", img_size=64, **tiny_vit)
    path = tmp_path / "vit.safetensors"
    save_backbone_weights(source, path)
    loaded = create_backbone("timm_vit_tiny_patch16", img_size=96, weights=path, **tiny_vit)
    assert loaded.load_report.resized == {"pos_embed": "resampled from a 4x4 to a 6x6 patch grid"}
    assert loaded.pos_embed.shape == (1, 37, 64)
    assert torch.equal(loaded.pos_embed[:, 0], source.pos_embed[:, 0])


def test_file_of_another_backbone_is_refused(tmp_path, tiny_vit):
    path = tmp_path / "resnet.safetensors"
    save_backbone_weights(create_backbone("resnet18"), path)
    with pytest.raises(SonofmError, match="holds weights of backbone 'resnet18', not 'timm_vit_tiny_patch16'"):
        create_backbone("timm_vit_tiny_patch16", img_size=32, weights=path, **tiny_vit)


def test_torchvision_resnet_state_dict_loads_with_its_classifier_ignored(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = create_backbone("resnet18", weights=path)
    assert model.load_report.ignored == {
        "fc.weight": "task head, not part of the backbone",
        "fc.bias": "task head, not part of the backbone",
    }
    assert torch.equal(model.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    assert create_backbone("resnet18").load_report is None
