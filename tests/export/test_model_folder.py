"""`sonofm export --format folder`: the folder loads back (``sonofm.load``, ``predict --model``) with the outputs of
``predict --run``, its config.json round-trips, its model card names the run's facts; --overwrite and refusals."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import sonofm
from sonofm.cli.main import main
from sonofm.runs.model_file import read_model_metadata, save_tensors
from sonofm.runs.model_folder import folder_config, load_model_folder, model_metadata

COMMON = ["--img-size", "32", "--epochs", "1", "--batch-size", "16", "--num-workers", "0", "--no-progress",
          "--model", "usfm_vit_tiny_patch16"]
TASKS = {"cls": ["--set", "model_args={depth: 2}"],
         "seg": ["--set", "model_args={depth: 4}", "--set", "head_args={channels: 16}"]}


@pytest.fixture(scope="module")
def phantom(phantom_set):
    return phantom_set(n_per_class=4, size=48, seed=3, frames_per_group=1)


@pytest.fixture(scope="module")
def runs(phantom, tmp_path_factory):
    """``{task: (run, exported folder)}`` for a tiny classifier and a tiny segmenter."""
    out = tmp_path_factory.mktemp("folder_export")
    made = {}
    for task, extra in TASKS.items():
        run, folder = out / f"{task}_run", out / "shared" / f"{task}_model"
        assert main(["finetune", task, "--data", str(phantom / task), "--out", str(run), *COMMON, *extra]) == 0
        assert main(["export", "--run", str(run), "--format", "folder", "--out", str(folder)]) == 0
        made[task] = run, folder
    return made


def predict_cli(source_flag, source, images, out):
    assert main(["predict", source_flag, str(source), "--input", str(images), "--out", str(out), "--no-progress",
                 "--precision", "32"]) == 0
    with (out / "predictions.csv").open() as handle:
        return {row["path"]: row for row in csv.DictReader(handle)}


def test_a_classifier_loads_from_a_run_a_lone_file_and_a_folder_as_predict_run(runs, phantom, tmp_path):
    run, folder = runs["cls"]
    images = phantom / "cls" / "cyst"
    expected = predict_cli("--run", run, images, tmp_path / "run")
    lone = tmp_path / "lone.safetensors"
    shutil.copy(run / "model.safetensors", lone)
    paths = sorted(images.glob("*.png"))
    for source in (run, lone, folder):
        model = sonofm.load(source)
        assert model.task == "cls" and model.classes == ["cyst", "irregular", "none", "solid_round"]
        for path, probabilities in zip(paths, model.predict(paths)):
            row = expected[str(path)]
            assert max(abs(value - float(row[f"prob_{name}"])) for name, value in probabilities.items()) <= 1e-5
    for name, source in (("folder", folder), ("file", lone)):
        rows = predict_cli("--model", source, images, tmp_path / name)
        assert rows.keys() == expected.keys()
        for path, row in rows.items():
            assert row["prediction"] == expected[path]["prediction"]
            assert max(abs(float(row[key]) - float(expected[path][key])) for key in row if key.startswith("prob_")) \
                <= 1e-5


def test_a_segmenter_loads_from_a_run_a_lone_file_and_a_folder_as_predict_run(runs, phantom, tmp_path):
    run, folder = runs["seg"]
    images = phantom / "seg" / "images"
    predict_cli("--run", run, images, tmp_path / "run")
    assert main(["predict", "--model", str(folder), "--input", str(images), "--out", str(tmp_path / "folder"),
                 "--no-progress", "--precision", "32"]) == 0
    paths = sorted(images.glob("*.png"))[:4]
    batch = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        reference = sonofm.load(run).model.predict(batch)
    for source in (run, run / "model.safetensors", folder):
        model = sonofm.load(source)
        for path, mask in zip(paths, model.predict(paths)):
            assert np.array_equal(mask, np.asarray(Image.open(tmp_path / "run" / "masks" / path.name)))
            assert np.array_equal(mask, np.asarray(Image.open(tmp_path / "folder" / "masks" / path.name)))
        with torch.inference_mode():
            assert (model.model.predict(batch) - reference).abs().max() <= 1e-5


def test_config_json_round_trips_and_describes_the_model(runs, tmp_path):
    run, folder = runs["seg"]
    config = json.loads((folder / "config.json").read_text())
    run_metadata = read_model_metadata(run / "model.safetensors")
    assert model_metadata(config) == run_metadata
    assert config["library_name"] == "sonofm" and config["task"] == "seg" and config["img_size"] == 32
    assert config["preprocessing"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert config["training"] == yaml.safe_load((run / "config.yaml").read_text())
    assert folder_config(model_metadata(config), config["preprocessing"], config["training"]) == config
    assert load_model_folder(folder).metadata == run_metadata
    assert (folder / "model.safetensors").read_bytes() == (run / "model.safetensors").read_bytes()
    edited = tmp_path / "edited"
    shutil.copytree(folder, edited)
    (edited / "config.json").write_text(json.dumps({**config, "classes": ["bg", "a", "b"]}))
    assert sonofm.load(edited).classes == ["bg", "a", "b"]  # the folder's model is the one config.json describes


def test_the_model_card_names_the_runs_facts_and_test_metrics(runs):
    run, folder = runs["cls"]
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "sonofm" and front["license"] == "other"
    assert front["pipeline_tag"] == "image-classification" and "ultrasound" in front["tags"]
    metrics = json.loads((run / "metrics.json").read_text())
    reported = {item["type"]: item["value"] for item in front["model-index"][0]["results"][0]["metrics"]}
    assert reported == {key[5:]: round(value, 4) for key, value in metrics.items() if key.count("/") == 1
                        and key.startswith("test/")}
    for key, value in metrics.items():
        if key.startswith("test/"):
            assert f"| {key[5:]} | {value:.4f} |" in card
    with (run / "split.csv").open() as handle:
        splits = [row["split"] for row in csv.DictReader(handle)]
    for split in set(splits):
        assert f"| {split} | {splits.count(split)} |" in card
    for text in ("# cls_model", "cyst, irregular, none, solid_round", "`usfm_vit_tiny_patch16`",
                 "random initialisation", str(yaml.safe_load((run / "config.yaml").read_text())["data"]),
                 "Research use only", "not a medical device", f"Trained on {splits.count('train')} images",
                 "see the data set's licence", 'sonofm.load("cls_model")', "sonofm predict --model cls_model"):
        assert text in card, text


def test_the_data_licence_and_a_chosen_licence_go_into_the_card(runs, phantom, tmp_path):
    run, _ = runs["cls"]
    data = tmp_path / "data"
    shutil.copytree(phantom / "cls", data)
    with (data / "labels.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    with (data / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, [*rows[0], "license"])
        writer.writeheader()
        writer.writerows({**row, "license": "CC BY 4.0" if i % 4 else "CC BY-NC 4.0"} for i, row in enumerate(rows))
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    (copy / "config.yaml").write_text(yaml.safe_dump({**config, "data": str(data)}, sort_keys=False))
    assert main(["export", "--run", str(copy), "--format", "folder", "--out", str(tmp_path / "a"),
                 "--license", "cc-by-nc-4.0"]) == 0
    card = (tmp_path / "a" / "README.md").read_text()
    assert f"CC BY 4.0 ({len(rows) - len(rows[::4])} images), CC BY-NC 4.0 ({len(rows[::4])} images)" in card
    assert yaml.safe_load(card.split("---\n")[1])["license"] == "cc-by-nc-4.0"
    (data / "LICENSE").write_text("\nCreative Commons Attribution 4.0\n\nfull text...\n")
    assert main(["export", "--run", str(copy), "--format", "folder", "--out", str(tmp_path / "b")]) == 0
    assert "Licence of the data: Creative Commons Attribution 4.0 (LICENSE of the data set)." in \
        (tmp_path / "b" / "README.md").read_text()


def test_an_existing_folder_is_replaced_only_with_overwrite(runs, tmp_path, cli_error):
    run, _ = runs["cls"]
    out = tmp_path / "model"
    out.mkdir()  # an empty folder is used as it is
    export = ["export", "--run", str(run), "--format", "folder", "--out", str(out)]
    assert main(export) == 0
    (out / "stale.txt").write_text("from before")
    assert "is a non-empty folder; pass --overwrite to replace it" in cli_error(export)
    assert (out / "stale.txt").is_file()
    assert main([*export, "--overwrite"]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert "refusing to overwrite" in cli_error([*export[:-1], str(other), "--overwrite"])
    (tmp_path / "file").write_text("x")
    assert "exists and is not a folder" in cli_error([*export[:-1], str(tmp_path / "file")])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file", "model", "other"]  # no staging left


def test_runs_that_cannot_be_exported_are_refused_in_one_line(runs, tmp_path, cli_error):
    run, _ = runs["cls"]

    def export(source):
        return cli_error(["export", "--run", str(source), "--format", "folder", "--out", str(tmp_path / "out")])

    assert "is not a sonofm run folder (no config.yaml)" in export(tmp_path)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run, unfinished)
    (unfinished / "metrics.json").unlink()
    assert f"run {unfinished} is not finished (no metrics.json)" in export(unfinished)
    (unfinished / "model.safetensors").unlink()
    assert "has no model.safetensors yet" in export(unfinished)
    sam = tmp_path / "sam"
    shutil.copytree(run, sam)
    save_tensors({"w": torch.zeros(1)}, sam / "model.safetensors", {"task": "sam", "classes": ["a"], "img_size": 64})
    assert f"run {sam} is an A-SAM run" in export(sam)
    save_tensors({"w": torch.zeros(1)}, sam / "model.safetensors", {"sonofm_backbone": "usfm_vit_tiny_patch16"})
    assert "is a pretraining run" in export(sam)
    assert not (tmp_path / "out").exists()


def test_broken_model_folders_fail_clearly(runs, tmp_path, cli_error):
    _, folder = runs["cls"]
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    config = json.loads((broken / "config.json").read_text())
    for content, reason in ((json.dumps({**config, "library_name": "timm"}), "is not the config of a sonofm model"),
                            ("{not json", f"cannot read {broken / 'config.json'}: "),
                            (json.dumps({k: v for k, v in config.items() if k != "model"}),
                             f"cannot read {broken / 'config.json'}: its metadata has no 'model' entry"),
                            (json.dumps({**config, "classes": ["a", "b"]}),
                             f"does not match the model {broken / 'config.json'} describes: size mismatch for head")):
        (broken / "config.json").write_text(content)
        assert reason in cli_error(["predict", "--model", str(broken), "--input", str(tmp_path),
                                    "--out", str(tmp_path / "p")])
    assert "nor a model folder written by `sonofm export --format folder`" in cli_error(
        ["predict", "--model", str(tmp_path / "p"), "--input", str(tmp_path), "--out", str(tmp_path / "p")])
