"""The ACLUS step: one pass per network over views + core, corruption only on the online core, EMA once per step."""

import lightning as L
import numpy as np
import torch
from PIL import Image

from sonofm.data.anatomy_maps import AnatomyPairs
from sonofm.methods.aclus.corruption import CorruptionConfig, corrupt
from sonofm.methods.aclus.dataset import AclusDataset
from sonofm.methods.aclus.model import AclusConfig, AclusModel, ema_momentum
from sonofm.tasks.aclus.module import AclusModule, LarsConfig


def small_batch(batch: int = 2, size: int = 64):
    generator = torch.Generator().manual_seed(0)
    views = torch.rand(2, batch, 3, size, size, generator=generator)
    view_masks = torch.randint(0, 3, (2, batch, size, size), generator=generator)
    core = torch.rand(batch, 3, size, size, generator=generator)
    core_masks = torch.randint(0, 3, (batch, size, size), generator=generator)
    return views, view_masks, core, core_masks


def test_one_pass_per_network_and_corruption_only_on_the_online_core():
    model = AclusModel("resnet18", 64, AclusConfig(num_ids=4))
    seen = {}
    for name in ("online", "target"):
        network = getattr(model, name)
        original = network.forward

        def capture(images, fractions, name=name, original=original):
            seen.setdefault(name, []).append(images.detach().clone())
            return original(images, fractions)

        network.forward = capture
    views, view_masks, core, core_masks = small_batch()
    corrupted = corrupt(core, CorruptionConfig(), torch.Generator().manual_seed(1))
    out = model.losses(views, view_masks, core, corrupted, core_masks, torch.ones(2, dtype=torch.bool),
                       torch.Generator().manual_seed(2))
    assert len(seen["online"]) == len(seen["target"]) == 1  # all scales from one pass each
    online, target = seen["online"][0], seen["target"][0]
    assert online.shape == target.shape == (6, 3, 64, 64)
    assert torch.equal(online[:4], target[:4])  # both views reach both networks unchanged
    assert not torch.equal(online[4:], target[4:])  # the online core is the corrupted one
    assert torch.isfinite(out["loss"]) and set(out) >= {"contrast_c5", "contrast_p2", "context_p4", "loss"}
    out["loss"].backward()
    assert all(param.grad is None for param in model.target.parameters())
    assert model.predictor[0].weight.grad is not None


def test_ema_momentum_schedule():
    assert ema_momentum(0, 100, 0.99) == 0.99
    assert abs(ema_momentum(50, 100, 0.99) - 0.995) < 1e-9
    assert ema_momentum(100, 100, 0.99) == 1.0


def test_the_target_is_updated_once_per_optimiser_step(tmp_path):
    pairs = []
    for index in range(8):
        image = (np.random.default_rng(index).random((48, 48)) * 255).astype(np.uint8)
        mask = np.zeros((48, 48), np.uint8)
        mask[10:30, 10:30] = 1
        Image.fromarray(image).save(tmp_path / f"{index}.png")
        Image.fromarray(mask).save(tmp_path / f"{index}_mask.png")
        pairs.append((tmp_path / f"{index}.png", tmp_path / f"{index}_mask.png"))
    model = AclusModel("resnet18", 32, AclusConfig(num_ids=2))
    before = [param.clone() for param in model.target.parameters()]
    module = AclusModule(model, LarsConfig(warmup_epochs=0), global_batch=4)
    pairs = AnatomyPairs([image for image, _ in pairs], [mask for _, mask in pairs])
    loader = torch.utils.data.DataLoader(AclusDataset(pairs, 32), batch_size=2)
    trainer = L.Trainer(max_epochs=1, accumulate_grad_batches=2, accelerator="cpu", logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader)
    assert trainer.global_step == 2 and module.ema_updates == 2  # 4 batches, 2 accumulated optimiser steps
    assert any(not torch.equal(a, b) for a, b in zip(before, model.target.parameters()))


def test_a_smaller_core_takes_its_own_pass_at_its_own_size():
    model = AclusModel("resnet18", 64, AclusConfig(num_ids=4))
    assert AclusConfig().resolved_core_size(224) == 128 and AclusConfig(core_size=64).resolved_core_size(224) == 64
    shapes = []
    original = model.online.forward
    model.online.forward = lambda images, fractions: shapes.append(tuple(images.shape)) or original(images, fractions)
    views, view_masks, _, _ = small_batch()
    core = torch.rand(2, 3, 32, 32)
    core_masks = torch.randint(0, 3, (2, 32, 32))
    out = model.losses(views, view_masks, core, core.clone(), core_masks, torch.ones(2, dtype=torch.bool),
                       torch.Generator().manual_seed(0))
    assert shapes == [(4, 3, 64, 64), (2, 3, 32, 32)] and torch.isfinite(out["loss"])


def test_network_embeddings_equal_projections_of_the_pooled_dense_pyramid():
    """The smoothing shortcut inside the network: the same embeddings as pooling the FPN's full maps."""
    from sonofm.methods.aclus.model import AclusNetwork
    from sonofm.methods.aclus.pooling import id_fractions, pool_features
    from sonofm.models.resnet_fpn import SCALES

    network = AclusNetwork("resnet18", 64, AclusConfig()).double().eval()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    masks = small_batch()[1][0]
    fractions = id_fractions(masks, torch.tensor([[0, 1, 2], [2, 2, 1]]), 16).double()
    dense = network.fpn(images)
    for scale, embedding in zip(SCALES, network(images, fractions)):
        head = network.project_c5 if scale == "c5" else network.project_fpn
        expected = head(pool_features(dense[scale], fractions).flatten(0, 1)).view(2, 3, -1)
        torch.testing.assert_close(embedding, expected)
