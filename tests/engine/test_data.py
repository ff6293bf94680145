"""make_loader: seeded training order, and workers that stay alive between epochs."""

import torch

from sonofm.data import workers
from sonofm.engine.data import make_loader
from sonofm.tasks.cls.finetune import ClsFinetuneConfig


def test_training_loaders_keep_their_workers_between_epochs(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(workers, "usable_cores", lambda: 2)
    dataset = torch.utils.data.TensorDataset(torch.zeros(8, 1))
    loader = make_loader(dataset, ClsFinetuneConfig(batch_size=2), train=True)
    assert loader.num_workers == 1 and loader.persistent_workers
    quiet = make_loader(dataset, ClsFinetuneConfig(batch_size=2, num_workers=0), train=True)
    assert quiet.num_workers == 0 and not quiet.persistent_workers
