"""Every training command, one after the other, in the same 2 CPU processes (gloo): run as a script by
test_ddp_commands.py. Lightning's launcher starts rank 1 by re-running this script when the first command trains;
both ranks then go through the same commands, as a k-fold study does. Every command trains 2 epochs, so each rank
takes at least 2 optimiser steps: DDP (without ``find_unused_parameters``) stops at the second step when a trainable
parameter got no gradient in the first.

Usage: python ddp_commands.py DATA_DIR SAM_CHECKPOINT ENCODER OUT_DIR
Writes OUT_DIR/exit_codes_<rank>.json: {command name: exit code}.
"""

import json
import os
import sys
from pathlib import Path

from sonofm.cli.main import main

DATA, SAM, ENCODER, OUT = (Path(arg) for arg in sys.argv[1:5])
DDP = ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--num-workers", "0", "--no-progress"]
VIT = ["--model", "usfm_vit_tiny_patch16", "--set", "model_args={depth: 4}", "--img-size", "32", "--epochs", "2",
       "--batch-size", "4", "--precision", "32"]
SEG = ["--set", "seg.head=linear", "--set", "seg.epochs=2", "--set", "seg.batch_size=4",
       "--set", "seg.num_workers=0", "--set", "seg.precision=32", "--set", "seg.accelerator=cpu",
       "--set", "seg.devices=2", "--set", "seg.strategy=ddp"]
CLS = ["--set", "cls.epochs=2", "--set", "cls.batch_size=4", "--set", "cls.num_workers=0", "--set", "cls.precision=32",
       "--set", "cls.accelerator=cpu", "--set", "cls.devices=2", "--set", "cls.strategy=ddp"]
SAM_TRAIN = ["--epochs", "2", "--batch-size", "4", "--precision", "32"]
STUDIES = ("label_efficiency", "compare")  # their runs take the DDP flags from their sections

COMMANDS: dict[str, list[str]] = {
    "finetune_cls": ["finetune", "cls", "--data", str(DATA / "cls"), *VIT, "--out", str(OUT / "cls")],
    "finetune_cls_overwrite": ["finetune", "cls", "--data", str(DATA / "cls"), *VIT, "--out", str(OUT / "cls"),
                               "--overwrite"],
    "finetune_seg": ["finetune", "seg", "--data", str(DATA / "seg"), *VIT, "--set", "head_args={channels: 16}",
                     "--out", str(OUT / "seg")],
    "finetune_enhance": ["finetune", "enhance", "--data", str(DATA / "seg"), "--degradation", "speckle", *VIT,
                         "--out", str(OUT / "enhance")],
    "pretrain_mim_token": ["pretrain", "mim", "--data", str(DATA / "seg" / "images"), *VIT, "--set",
                           "mim.mask_patch=16", "--set", "mim.fill=token", "--set", "figure_every=0",
                           "--out", str(OUT / "mim_token")],
    "pretrain_mim_mean": ["pretrain", "mim", "--data", str(DATA / "seg" / "images"), *VIT, "--set",
                          "mim.mask_patch=16", "--set", "figure_every=0", "--out", str(OUT / "mim_mean")],  # default
    "pretrain_aclus": ["pretrain", "aclus", "--data", str(DATA / "seg" / "images"), "--masks",
                       str(DATA / "seg" / "masks"), "--model", "resnet18", "--img-size", "32", "--epochs", "2",
                       "--batch-size", "4", "--precision", "32", "--set", "aclus.num_ids=4", "--out",
                       str(OUT / "aclus")],
    "sam_finetune": ["sam", "finetune", "--data", str(DATA / "seg"), "--sam-checkpoint", str(SAM), "--sam-type",
                     "vit_tiny", "--img-size", "64", "--prompts", "box", *SAM_TRAIN, "--out", str(OUT / "sam")],
    "sam_train_prompter": ["sam", "train-prompter", "--run", str(OUT / "sam"), "--data", str(DATA / "seg"),
                           *SAM_TRAIN, "--out", str(OUT / "prompter")],
    "kfold": ["kfold", "--task", "cls", "--data", str(DATA / "cls"), "--folds", "2", *VIT, "--set",
              "gradcam_per_class=0", "--out", str(OUT / "kfold")],
    "label_efficiency": ["experiment", "label-efficiency", "--task", "seg", "--data", str(DATA / "seg"),
                         "--weights", str(ENCODER), "--model", "usfm_vit_tiny_patch16", "--img-size", "32",
                         "--set", "model_args={depth: 1}", "--fractions", "1.0", "--seeds", "1", "--no-progress", *SEG,
                         "--out", str(OUT / "label_efficiency")],
    "compare": ["experiment", "compare", "--task", "cls", "--data", str(DATA / "cls"), "--init", "scratch",
                "--init", f"enc=weights:{ENCODER}", "--model", "usfm_vit_tiny_patch16", "--img-size", "32",
                "--set", "model_args={depth: 1}", "--fractions", "1.0", "--seeds", "1", "--folds", "2",
                "--no-progress", *CLS, "--out", str(OUT / "compare")],
}

if __name__ == "__main__":
    codes = {}
    for name, argv in COMMANDS.items():
        codes[name] = main([*argv, *([] if name in STUDIES else DDP)])
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    (OUT / f"exit_codes_{rank}.json").write_text(json.dumps(codes))
