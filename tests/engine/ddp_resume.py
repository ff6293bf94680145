"""A MIM run on 1 or 2 CPU processes (gloo) for test_ddp_resume.py: run as a script, re-run by Lightning's launcher
for rank 1.

Usage: python ddp_resume.py DATA OUT PROCESSES [CRASH_STEP]   (DATA: an image folder or a packed folder)
With CRASH_STEP every rank stops with a RuntimeError when that optimiser step is about to start.
"""

import sys

import lightning as L

from sonofm.tasks.mim.pretrain import MimPretrainConfig, pretrain_mim


class CrashAtStep(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")


if __name__ == "__main__":
    images, out, processes = sys.argv[1], sys.argv[2], sys.argv[3]
    config = MimPretrainConfig(
        data=[images], model="usfm_vit_tiny_patch16", model_args={"depth": 2}, img_size=32, epochs=3, batch_size=2,
        num_workers=0, progress=False, figure_every=0, checkpoint_every=3, precision="32", accelerator="cpu",
        devices=processes, strategy="ddp" if processes != "1" else "auto",
    )
    config.mim.mask_patch = 16
    crash = [CrashAtStep(int(sys.argv[4]))] if len(sys.argv) > 4 else []
    pretrain_mim(config, out, echo=lambda _: None, callbacks=crash)
