"""A-SAM on phantom data with a tiny SAM-shaped model: stage 1 learns from prompts, the prompter learns per-class
masks, automask writes right-sized id maps and resumes, runs resume exactly, and bad input fails clearly."""

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from sonofm.cli.main import main
from sonofm.data.datasets import SegmentationDataset
from sonofm.data.layouts import load_index
from sonofm.data.pack_writer import pack_images
from sonofm.data.packed import PackedImages
from sonofm.data.phantom import write_phantom_dataset
from sonofm.data.records import Sample
from sonofm.data.splits import load_split
from sonofm.data.work_shard import Shard
from sonofm.sam import build_adapted_sam, build_sam, load_adapted_sam, save_sam_checkpoint
from sonofm.tasks.sam import train as sam_train
from sonofm.tasks.sam.automask import automask
from sonofm.tasks.sam.evaluation import evaluate_sam
from sonofm.tasks.sam.train import PrompterConfig, SamFinetuneConfig, finetune_sam, train_prompter

QUIET = {"echo": lambda line: None}


@pytest.fixture(scope="module")
def phantom(phantom_set):
    """64 phantom images (16 simulated patients) with masks of two anatomy classes: lesion and layer."""
    return phantom_set(n_per_class=16, size=64, seed=3) / "seg"


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory):
    torch.manual_seed(0)
    return save_sam_checkpoint(build_sam("vit_tiny"), tmp_path_factory.mktemp("sam") / "sam_vit_tiny.pth")


def stage_one_config(phantom, tiny_sam, **changes) -> SamFinetuneConfig:
    """LoRA: on a random-init tiny SAM, SAMUS's frozen random decoder learns the phantom too slowly for a test (the
    SAMUS adapter learns on real data: tests/tasks/sam/test_real_data.py)."""
    config = SamFinetuneConfig(data=str(phantom), sam_checkpoint=str(tiny_sam), sam_type="vit_tiny", img_size=128,
                               epochs=25, batch_size=8, progress=False, adapter="lora")
    config.optim.lr = 2e-3
    for key, value in changes.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="module")
def a_sam_run(phantom, tiny_sam, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "a_sam"
    metrics = finetune_sam(stage_one_config(phantom, tiny_sam), run, **QUIET)
    return run, metrics


@pytest.fixture(scope="module")
def prompter_run(phantom, a_sam_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "prompter"
    config = PrompterConfig(data=str(phantom), run=str(a_sam_run[0]), epochs=40, batch_size=8, progress=False)
    config.optim.lr = 3e-3
    return run, train_prompter(config, run, **QUIET)


@pytest.mark.slow
def test_stage_one_loss_falls_and_prompted_dice_beats_the_untrained_model(phantom, tiny_sam, a_sam_run):
    run, metrics = a_sam_run
    with (run / "log.csv").open() as handle:
        losses = [float(row["train/loss_epoch"]) for row in csv.DictReader(handle)]
    assert losses[-1] < 0.85 * losses[0]

    index = load_index(phantom, task="seg")
    test = load_split(run / "split.csv", index)["test"]
    untrained = build_adapted_sam(tiny_sam, "vit_tiny", 128, index.classes, adapter="lora")
    before, _ = evaluate_sam(untrained, test, "prompt", ["point", "box"], progress=False)
    for kind in ("point", "box"):
        assert metrics[f"test/{kind}/dice"] > before[f"{kind}/dice"] + 0.15, (kind, metrics, before)
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["test/box/dice"] == pytest.approx(metrics["test/box/dice"])
    for name in ("config.yaml", "split.csv", "model.safetensors", "examples_val.png", "per_image_test_point.csv",
                 "per_image_test_box.csv", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name


@pytest.fixture(scope="module")
def fresh_patients(tmp_path_factory):
    """48 phantom images of 12 new simulated patients: the run's own test split (about 12 images) is too small to
    tell a learnt prompter from noise (its per-class Dice moved by 0.2 between machines)."""
    root = write_phantom_dataset(tmp_path_factory.mktemp("fresh"), n_per_class=12, size=64, seed=5) / "seg"
    return load_index(root, task="seg").samples


@pytest.mark.slow
def test_prompter_learns_a_mask_per_anatomy_class(fresh_patients, prompter_run, a_sam_run):
    run, _ = prompter_run
    trained = load_adapted_sam(run / "model.safetensors")
    untrained = load_adapted_sam(a_sam_run[0] / "model.safetensors")
    torch.manual_seed(0)
    untrained.add_prompter()
    after, _ = evaluate_sam(trained, fresh_patients, "auto", [], progress=False)
    before, _ = evaluate_sam(untrained, fresh_patients, "auto", [], progress=False)
    # measured on this machine: Dice 0.30-0.43 per class after, 0.11 / 0.22 before
    assert after["auto/dice"] > before["auto/dice"] + 0.1, (after, before)
    for name in ("class_1", "class_2"):  # the lesion and the layer, each from its own tokens
        assert after[f"auto/dice/{name}"] > before[f"auto/dice/{name}"] + 0.05, (name, after, before)


def test_cli_evaluate_matches_the_run_metrics(prompter_run, capsys):
    run, metrics = prompter_run
    assert main(["sam", "evaluate", "--run", str(run), "--no-progress"]) == 0
    written = json.loads((run / "evaluate_auto_test.json").read_text())
    assert written["test/auto/dice"] == pytest.approx(metrics["test/auto/dice"], abs=1e-6)
    assert "test/auto/hd95" in capsys.readouterr().out


def test_automask_writes_id_maps_at_each_image_size_and_resumes(phantom, prompter_run, tmp_path):
    images = tmp_path / "unlabeled"
    (images / "sub").mkdir(parents=True)
    sources = sorted((phantom / "images").glob("*.png"))[:5]
    sizes = [(90, 50), (64, 64), (40, 70), (128, 96), (64, 64)]
    for number, (source, size) in enumerate(zip(sources, sizes)):
        folder = images / "sub" if number % 2 else images
        Image.open(source).convert("L").resize(size).save(folder / f"img{number}.png")
    out = tmp_path / "masks"

    first = automask(prompter_run[0], images, out, batch_size=2, shard=Shard(0, 2), progress=False, **QUIET)
    assert first.written == 3 and first.index is None  # shard 0 of 2: images 0, 2, 4; no index before all are done
    second = automask(prompter_run[0], images, out, batch_size=2, shard=Shard(1, 2), progress=False, **QUIET)
    assert second.written == 2 and second.index == out / "index.csv"

    with (out / "index.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5
    for row in rows:
        image = Image.open(row["image"])
        mask = np.array(Image.open(out / row["mask"]))
        assert mask.shape == (image.height, image.width) and mask.dtype == np.uint8
        present = sorted(int(c) for c in np.unique(mask) if c)
        assert set(present) <= {1, 2}
        assert row["classes_present"] == ";".join(str(c) for c in present)
        assert 0.5 <= float(row["mean_confidence"]) <= 1.0
    assert (out / "masks" / "sub" / "img1.png").is_file()
    assert json.loads((out / "classes.json").read_text()) == {"0": "background", "1": "class_1", "2": "class_2"}

    stamp = {row["mask"]: (out / row["mask"]).stat().st_mtime_ns for row in rows}
    again = automask(prompter_run[0], images, out, progress=False, **QUIET)
    assert again.written == 0 and again.already_done == 5
    assert {name: (out / name).stat().st_mtime_ns for name in stamp} == stamp

    (out / rows[0]["mask"]).unlink()  # a lost mask is redone, nothing else
    assert automask(prompter_run[0], images, out, progress=False, **QUIET).written == 1


def test_automask_labels_a_packed_folder_as_its_image_folder(phantom, prompter_run, tmp_path):
    """A pack (not resized) gets the same maps as its folder, named by key; the index names each packed image."""
    images = tmp_path / "images"
    images.mkdir()
    for number, source in enumerate(sorted((phantom / "images").glob("*.png"))[:4]):
        Image.open(source).convert("L").resize((48 + 16 * number, 64)).save(images / f"img{number}.png")
    pack_images([images], tmp_path / "pack", shard_size=3, progress=False)
    from_folder = automask(prompter_run[0], images, tmp_path / "folder_masks", batch_size=3, progress=False,
                           **QUIET)  # batches as the pack's: a different batch size may flip a tied pixel
    from_pack = automask(prompter_run[0], tmp_path / "pack", tmp_path / "pack_masks", batch_size=3,
                         progress=False, **QUIET)
    assert from_pack.written == from_folder.written == 4
    packed = PackedImages(tmp_path / "pack")
    with (tmp_path / "pack_masks" / "index.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["image"] for row in rows] == [packed.name(position) for position in range(4)]
    assert rows[3]["image"] == f"{(tmp_path / 'pack').resolve()}/shard-000001.tar#000000003"
    for position, original in enumerate(packed.original_paths()):
        assert rows[position]["mask"] == f"masks/{packed.key(position)}.png"
        folder_mask = np.array(Image.open(tmp_path / "folder_masks" / "masks" / original.name))
        pack_mask = np.array(Image.open(tmp_path / "pack_masks" / rows[position]["mask"]))
        assert pack_mask.shape == (64, 48 + 16 * position)
        np.testing.assert_array_equal(pack_mask, folder_mask)


@pytest.mark.parametrize("adapter", ["lora", "samus"])
def test_interrupted_stage_one_resumes_exactly(phantom, tiny_sam, tmp_path, crash_at_epoch, assert_same_weights,
                                               adapter):
    config = stage_one_config(phantom, tiny_sam, epochs=3, img_size=64, adapter=adapter)
    finetune_sam(config, tmp_path / "straight", **QUIET)
    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune_sam(stage_one_config(phantom, tiny_sam, epochs=3, img_size=64, adapter=adapter),
                     tmp_path / "resumed", callbacks=[crash_at_epoch(2)], **QUIET)
    finetune_sam(stage_one_config(phantom, tiny_sam, epochs=3, img_size=64, adapter=adapter), tmp_path / "resumed",
                 **QUIET)
    assert_same_weights(tmp_path / "straight", tmp_path / "resumed")  # the adapter's tensors and the mask decoder
    assert (tmp_path / "resumed/split.csv").read_text() == (tmp_path / "straight/split.csv").read_text()
    assert (tmp_path / "resumed/log.csv").read_text().count("\n") == 1 + 3


def unaugmented(samples: list[Sample], img_size: int, train: bool) -> SegmentationDataset:
    """A segmentation data set that never augments: the images the embedding cache encodes."""
    return SegmentationDataset(samples, img_size, train=False)


def test_cached_embeddings_train_the_frozen_encoder_model_as_images_do(phantom, tiny_sam, tmp_path, monkeypatch,
                                                                      assert_same_weights):
    """Training on cached embeddings ends with the weights that training on the (un-augmented) images through the
    frozen encoder gives, bit for bit, and only the mask decoder trains."""
    frozen = {"epochs": 1, "img_size": 64, "adapter": "frozen", "num_workers": 0}
    finetune_sam(stage_one_config(phantom, tiny_sam, cache_embeddings=True, **frozen), tmp_path / "cached", **QUIET)
    monkeypatch.setattr(sam_train, "SegmentationDataset", unaugmented)
    finetune_sam(stage_one_config(phantom, tiny_sam, **frozen), tmp_path / "images", **QUIET)
    assert_same_weights(tmp_path / "cached", tmp_path / "images")

    trained = load_file(tmp_path / "cached" / "model.safetensors")
    base = torch.load(tiny_sam, weights_only=True)
    assert trained and all(key.startswith("sam.mask_decoder.") for key in trained)  # no encoder tensor, no LoRA
    moved = [key for key, value in trained.items() if not torch.equal(value, base[key.removeprefix("sam.")])]
    assert len(moved) > len(trained) / 2, moved


def test_bad_input_fails_with_one_line(phantom, tiny_sam, a_sam_run, prompter_run, tmp_path, cli_error):
    base = ["sam", "finetune", "--data", str(phantom), "--sam-checkpoint", str(tiny_sam), "--out", str(tmp_path / "r")]
    assert "pass --sam-type vit_tiny" in cli_error(base)
    assert "prompt kinds" in cli_error([*base, "--sam-type", "vit_tiny", "--prompts", "point,scribble"])
    assert "cache_embeddings needs --adapter frozen" in cli_error(
        [*base, "--sam-type", "vit_tiny", "--set", "cache_embeddings=true"])
    assert "weights file not found" in cli_error(
        ["sam", "finetune", "--data", str(phantom), "--sam-checkpoint", str(tmp_path / "none.pth"),
         "--out", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()  # nothing written by a failed start
    assert "no automatic prompter" in cli_error(
        ["sam", "automask", "--run", str(a_sam_run[0]), "--images", str(phantom / "images"), "--out", str(tmp_path / "m")])
    assert "no automatic prompter" in cli_error(["sam", "evaluate", "--run", str(a_sam_run[0]), "--mode", "auto"])
    assert "--shard must look like K/N" in cli_error(
        ["sam", "automask", "--run", str(a_sam_run[0]), "--images", str(phantom), "--out", str(tmp_path / "m"),
         "--shard", "2"])
    assert "not a sonofm run folder" in cli_error(
        ["sam", "train-prompter", "--run", str(tmp_path), "--data", str(phantom), "--out", str(tmp_path / "p")])
    assert "not an A-SAM run" in cli_error(
        ["sam", "train-prompter", "--run", str(prompter_run[0]), "--data", str(phantom), "--out", str(tmp_path / "p")])


def test_samus_list_layout_trains_through_the_cli(phantom, tiny_sam, tmp_path):
    """ACLUS/SAMUS layout: ROOT/<dataset>/{img,label}, MainPatient/{train,val,test}.txt; the lists' splits are kept."""
    root = tmp_path / "US"
    for folder in ("img", "label"):
        (root / "Phantom" / folder).mkdir(parents=True)
    names = sorted(path.stem for path in (phantom / "images").glob("*.png"))[:24]
    for name in names:
        shutil.copy(phantom / "images" / f"{name}.png", root / "Phantom" / "img" / f"{name}.png")
        shutil.copy(phantom / "masks" / f"{name}.png", root / "Phantom" / "label" / f"{name}.png")
    (root / "MainPatient").mkdir()
    parts = {"train": names[:16], "val": names[16:20], "test": names[20:]}
    for split, chosen in parts.items():
        lines = [f"Phantom/{name}" if split == "test" else f"{c}/Phantom/{name}" for name in chosen for c in (1, 2)]
        (root / "MainPatient" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    assert main(["sam", "finetune", "--data", str(root), "--sam-checkpoint", str(tiny_sam), "--sam-type", "vit_tiny",
                 "--img-size", "64", "--epochs", "1", "--batch-size", "8", "--prompts", "box", "--out", str(run),
                 "--no-progress"]) == 0
    with (run / "split.csv").open() as handle:
        written = {row["name"]: row["split"] for row in csv.DictReader(handle)}
    assert written == {f"{name}.png": split for split, chosen in parts.items() for name in chosen}
    with (run / "per_image_test_box.csv").open() as handle:
        assert sorted(row["name"] for row in csv.DictReader(handle)) == parts["test"]  # scored on test.txt
    metrics = json.loads((run / "metrics.json").read_text())
    assert "test/box/dice" in metrics and "test/point/dice" not in metrics
    assert metrics.pop("best_epoch") == 0  # the one epoch
    assert_scores_in_range(metrics, image_side=64)


def assert_scores_in_range(scores: dict[str, float], image_side: int) -> None:
    """Every score is a finite number; HD95 (pixels) lies within the image diagonal, USFM's row-wise "Hausdorff"
    (L1 between mask rows) within the image width, every other score in [0, 1]."""
    for key, value in scores.items():
        assert isinstance(value, (int, float)) and math.isfinite(value), (key, value)
        if "/hd95" in key and not key.endswith("hd95_undefined"):
            assert 0 <= value <= image_side * math.sqrt(2), (key, value)
        elif "/usfm_hausdorff" in key:
            assert 0 <= value <= image_side, (key, value)
        else:
            assert 0 <= value <= 1, (key, value)


def test_shard_comes_from_the_launcher_environment(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert Shard.from_environment() == Shard(1, 3)
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert Shard.from_environment() == Shard(0, 1)
