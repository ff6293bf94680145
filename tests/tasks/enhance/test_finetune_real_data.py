"""Enhancement on real ultrasound (../shared/data via SONOFM_DATA): a short speckle run on a BUSI subset restores
test images better than the degraded input, with a grouped split."""

import pytest

from sonofm.data.degradations import DegradationConfig
from sonofm.tasks.enhance.finetune import EnhanceFinetuneConfig, finetune_enhancer


@pytest.mark.real_data
def test_speckle_restoration_beats_the_degraded_input(shared_data, seg_subset, tmp_path):
    data = seg_subset(shared_data / "seg" / "BUSI", tmp_path / "busi", 32)
    config = EnhanceFinetuneConfig(
        data=str(data), model="usfm_vit_tiny_patch16", model_args={"depth": 4}, img_size=64, epochs=8, batch_size=4,
        num_workers=0, progress=False, degradation=DegradationConfig("speckle"), split_ratios=(0.6, 0.2, 0.2),
    )
    config.optim.lr, config.optim.warmup_epochs = 4e-3, 0
    metrics = finetune_enhancer(config, tmp_path / "run", echo=lambda _: None)
    # measured gain on this split's 6 test images: 1.71 dB in fp32, 1.67 dB in bf16 (their detected fan is the whole
    # image, so the fan gain is the same); seeds 1 and 2, with other splits, gave 0.78 and 1.04 dB in fp32
    assert metrics["test/psnr"] > metrics["test/psnr_degraded"] + 1.0
    assert metrics["test/psnr_fan"] > metrics["test/psnr_fan_degraded"] + 1.0
