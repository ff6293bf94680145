"""The per-epoch test scores behind USCL's optimistic figure: rows survive a resume, the best epoch is the first
with the highest test accuracy."""

from types import SimpleNamespace

import torch
from torch.utils.data import DataLoader, TensorDataset

from sonofm.tasks.cls.epoch_test_scores import EpochTestScores, best_test_epoch, read_test_per_epoch


class Fixed(torch.nn.Module):
    """Predicts class ``answer`` for every image."""

    def __init__(self, answer: int) -> None:
        super().__init__()
        self.answer = answer

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.full((len(images),), self.answer), 2).float()


def score_epoch(callback: EpochTestScores, epoch: int, answer: int) -> None:
    trainer = SimpleNamespace(is_global_zero=True, sanity_checking=False, current_epoch=epoch)
    callback.on_train_epoch_end(trainer, SimpleNamespace(model=Fixed(answer), device=torch.device("cpu")))


def test_rows_per_epoch_survive_a_resume_and_the_best_is_the_first_highest(tmp_path):
    labels = torch.tensor([0, 0, 0, 1])
    loader = DataLoader(TensorDataset(torch.zeros(4, 3, 8, 8), labels), batch_size=3)
    path = tmp_path / "test_per_epoch.csv"
    callback = EpochTestScores(loader, path, num_classes=2)
    for epoch, answer in enumerate([1, 0, 0]):
        score_epoch(callback, epoch, answer)
    assert [(epoch, accuracy) for epoch, accuracy, _ in read_test_per_epoch(path)] == [(0, 0.25), (1, 0.75), (2, 0.75)]
    epoch, matrix = best_test_epoch(path)
    assert epoch == 1 and matrix.tolist() == [[3, 0], [1, 0]]
    score_epoch(callback, 1, 1)  # a resumed run redoes epoch 1: later rows go, earlier ones stay
    assert [(epoch, accuracy) for epoch, accuracy, _ in read_test_per_epoch(path)] == [(0, 0.25), (1, 0.25)]
    assert best_test_epoch(tmp_path / "absent.csv") is None
