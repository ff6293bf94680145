"""``sonofm pretrain aclus``: runs from anatomy-map folders or an automask index, resumes exactly, exports a backbone
that fine-tuning loads, fails clearly on bad input; on real ultrasound a short CPU run lowers both loss terms."""

import csv
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from sonofm.cli.main import main
from sonofm.data.pack_writer import pack_images
from sonofm.data.packed import PackedImages
from sonofm.models import create_backbone
from sonofm.tasks.aclus.pretrain import AclusPretrainConfig, pretrain_aclus

QUIET = {"echo": lambda line: None}


@pytest.fixture(scope="module")
def phantom(phantom_set):
    return phantom_set(n_per_class=4, size=64, seed=5) / "seg"


def tiny_config(phantom, **changes) -> AclusPretrainConfig:
    config = AclusPretrainConfig(data=[str(phantom / "images")], masks=[str(phantom / "masks")], img_size=32,
                                 epochs=3, batch_size=8, num_workers=0, progress=False)
    config.aclus.num_ids = 4
    for key, value in changes.items():
        setattr(config, key, value)
    return config


def test_interrupted_run_resumes_exactly_and_exports_a_backbone(phantom, tmp_path, crash_at_epoch):
    straight = pretrain_aclus(tiny_config(phantom), tmp_path / "straight", **QUIET)
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain_aclus(tiny_config(phantom), tmp_path / "resumed", callbacks=[crash_at_epoch(2)], **QUIET)
    resumed = pretrain_aclus(tiny_config(phantom), tmp_path / "resumed", **QUIET)
    assert resumed == pytest.approx(straight, rel=1e-5)
    assert straight["steps"] == 6 and straight["images"] == 16
    backbone = create_backbone("resnet18", weights=tmp_path / "straight" / "model.safetensors")
    assert backbone.load_report.missing == []
    exported = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    torch.testing.assert_close(backbone.conv1.weight, exported["model.online.fpn.backbone.conv1.weight"])


class AnatomyIdsSeen(L.Callback):
    """Collects every anatomy id in the view and core maps of the training batches."""

    def __init__(self) -> None:
        self.ids: set[int] = set()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict, batch_idx: int):
        for name in ("view_masks", "core_mask"):
            self.ids |= {int(value) for value in batch[name].unique()}


def two_id_map(size: tuple[int, int], left: int, right: int) -> Image.Image:
    """An anatomy map with id ``left`` on its left half and ``right`` on its right half."""
    width, height = size
    ids = np.full((height, width), left, np.uint8)
    ids[:, width // 2 :] = right
    return Image.fromarray(ids)


def test_automask_index_drives_pretraining(phantom, tmp_path):
    """The maps named in the index are the ones trained on: each image's own ids (10 + k | 40 + k, absent from the
    phantom's masks of the same name) reach the batches, and nothing else."""
    index = tmp_path / "masks" / "index.csv"
    (tmp_path / "masks" / "maps").mkdir(parents=True)
    rows, own_ids = [], []
    for number, image in enumerate(sorted((phantom / "images").glob("*.png"))[:8]):
        two_id_map(Image.open(image).size, 10 + number, 40 + number).save(tmp_path / "masks" / "maps" / f"{number}.png")
        rows.append({"image": str(image), "mask": f"maps/{number}.png", "classes_present": "", "mean_confidence": "1"})
        own_ids.append({10 + number, 40 + number})
    with index.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    seen = AnatomyIdsSeen()
    metrics = pretrain_aclus(tiny_config(phantom, masks=[str(index)], epochs=1), tmp_path / "run", callbacks=[seen],
                             **QUIET)
    assert metrics["images"] == 8 and np.isfinite(metrics["train/loss_epoch"])
    with (tmp_path / "run" / "pairs.csv").open() as handle:
        pairs = [(row["image"], row["mask"]) for row in csv.DictReader(handle)]
    assert pairs == [(row["image"], str(index.parent / row["mask"])) for row in rows]
    assert seen.ids <= set().union(*own_ids)
    assert all(seen.ids & ids for ids in own_ids)  # every image's map was read (a crop may show one half only)


def automask_output_for(packed: PackedImages, masks: Path, out: Path) -> Path:
    """What ``sonofm sam automask`` writes for a pack (``masks/<key>.png``, ``automask.json``), from mask files
    named like the packed images' originals."""
    (out / "masks").mkdir(parents=True)
    (out / "automask.json").write_text("{}")
    for position, original in enumerate(packed.original_paths()):
        shutil.copy(masks / original.name, out / "masks" / f"{packed.key(position)}.png")
    return out


def test_a_packed_folder_with_its_automask_maps_trains_as_the_image_folder(phantom, tmp_path):
    """``--data PACK --masks AUTOMASK_OUT``: the same images and maps in the same order give the same weights as
    the image folder with its mask folder (a pack not resized holds the images' exact pixels)."""
    pack_images([phantom / "images"], tmp_path / "pack", shard_size=5, progress=False)
    out = automask_output_for(PackedImages(tmp_path / "pack"), phantom / "masks", tmp_path / "automask")
    from_folders = pretrain_aclus(tiny_config(phantom, epochs=1), tmp_path / "folders", **QUIET)
    for masks in (out, out / "masks"):
        run = tmp_path / f"pack_{masks.name}"
        from_pack = pretrain_aclus(tiny_config(phantom, epochs=1, data=[str(tmp_path / "pack")], masks=[str(masks)]),
                                   run, **QUIET)
        assert from_pack == from_folders
        assert not (run / "pairs.csv").exists()
        for name, weight in load_file(tmp_path / "folders" / "model.safetensors").items():
            assert torch.equal(load_file(run / "model.safetensors")[name], weight), name


def test_a_packed_folder_with_missing_or_foreign_maps_fails_with_one_line(phantom, tmp_path, cli_error):
    pack_images([phantom / "images"], tmp_path / "pack", shard_size=5, progress=False)
    packed = PackedImages(tmp_path / "pack")
    out = automask_output_for(packed, phantom / "masks", tmp_path / "automask")
    base = ["pretrain", "aclus", "--data", str(tmp_path / "pack"), "--img-size", "32", "--batch-size", "8",
            "--num-workers", "0", "--out", str(tmp_path / "r")]
    assert "anatomy-map folder not found" in cli_error([*base, "--masks", str(tmp_path / "nowhere")])
    last = out / "masks" / f"{packed.key(len(packed) - 1)}.png"
    last.unlink()
    assert f"no anatomy map for {packed.name(len(packed) - 1)}: {last} not found" in cli_error(
        [*base, "--masks", str(out), "--num-workers", "1"])
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(out / "masks" / f"{packed.key(0)}.png")
    assert "were the maps made for this pack?" in cli_error([*base, "--masks", str(out)])


def test_bad_input_fails_with_one_line(phantom, tmp_path, cli_error):
    masks = tmp_path / "masks"
    shutil.copytree(phantom / "masks", masks)
    base = ["pretrain", "aclus", "--data", str(phantom / "images"), "--masks", str(masks), "--out", str(tmp_path / "r")]
    assert "--model must be one of resnet18, resnet50" in cli_error([*base, "--model", "usfm_vit_tiny_patch16"])
    first = sorted(masks.glob("*.png"))[0]
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(first)
    assert f"anatomy map {first} is 10x10" in cli_error(base)
    first.unlink()
    assert "no anatomy map for" in cli_error(base)
    assert "one folder per --data folder" in cli_error([*base, "--masks", str(masks), str(masks)])
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").glob("checkpoints/*"))


@pytest.mark.slow
@pytest.mark.real_data
def test_short_cpu_pretraining_on_real_anatomy_maps_lowers_the_loss(shared_data, seg_subset, tmp_path):
    """Ground-truth masks of two real segmentation sets (fetal head, carotid) serve as anatomy maps."""
    data, masks = [], []
    for name in ("HC18", "CCA_CAROTID"):
        subset = seg_subset(shared_data / "seg" / name, tmp_path / name, 64)
        data.append(str(subset / "images"))
        masks.append(str(subset / "masks"))
    assert main(["pretrain", "aclus", "--data", *data, "--masks", *masks, "--img-size", "64", "--epochs", "5",
                 "--batch-size", "32", "--lr", "1.0", "--set", "optim.warmup_epochs=1", "--no-progress",
                 "--out", str(tmp_path / "run")]) == 0
    with (tmp_path / "run" / "log.csv").open() as handle:
        log = list(csv.DictReader(handle))
    first, last = log[0], log[-1]
    assert float(last["train/contrast_epoch"]) < float(first["train/contrast_epoch"]) - 0.5
    assert float(last["train/context_epoch"]) < 0.9 * float(first["train/context_epoch"])


def test_balance_weights_share_an_epoch_between_image_folders(phantom, tmp_path):
    """Two --data folders (5 and 11 images) with their map folders, weights 1:1: each gets half the 16 draws."""
    folders = []
    for name, count in (("small", 5), ("large", 11)):
        images, masks = tmp_path / name / "images", tmp_path / name / "masks"
        images.mkdir(parents=True)
        masks.mkdir()
        chosen = sorted((phantom / "images").glob("*.png"))[:count] if name == "small" else \
            sorted((phantom / "images").glob("*.png"))[-count:]
        for path in chosen:
            shutil.copy(path, images / path.name)
            shutil.copy(phantom / "masks" / path.name, masks / path.name)
        folders.append((images, masks))
    (tmp_path / "weights.csv").write_text("".join(f"{images},1\n" for images, _ in folders))  # both end in images/
    config = tiny_config(phantom, data=[str(images) for images, _ in folders], masks=[str(m) for _, m in folders],
                         epochs=1, balance=str(tmp_path / "weights.csv"))
    lines = []
    drawn = []

    class Draws(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            drawn.extend(position for position, _ in trainer.train_dataloader.sampler)

    pretrain_aclus(config, tmp_path / "run", echo=lines.append, callbacks=[Draws()])
    assert any(line.startswith("balanced over 2 sources") for line in lines), lines
    with (tmp_path / "run" / "pairs.csv").open(newline="") as handle:
        images = [row["image"] for row in csv.DictReader(handle)]
    counts = {name: sum(f"/{name}/" in images[position] for position in drawn) for name in ("small", "large")}
    assert counts == {"small": 8, "large": 8}
