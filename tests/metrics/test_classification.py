import math

import pytest
import torch

from sonofm.metrics.classification import classification_metrics, confusion_matrix, confusion_metrics

CLASSES = ["a", "b", "c"]


def one_hot(predictions, num_classes=3):
    return torch.nn.functional.one_hot(torch.tensor(predictions), num_classes).float()


def test_hand_computed_case():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    predictions = [0, 0, 0, 1, 1, 2, 2, 2]
    metrics = classification_metrics(one_hot(predictions), labels, CLASSES)
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    assert metrics["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)
    assert metrics["recall/a"] == pytest.approx(3 / 4)
    assert metrics["precision/b"] == pytest.approx(1 / 2)
    assert metrics["precision/c"] == pytest.approx(2 / 3)
    f1 = [2 * 1 * 0.75 / 1.75, 0.5, 2 * (2 / 3) * 1 / (5 / 3)]
    assert metrics["macro_f1"] == pytest.approx(sum(f1) / 3)


def test_majority_baseline_has_chance_balanced_accuracy():
    labels = torch.tensor([0] * 6 + [1] * 3 + [2] * 1)
    metrics = classification_metrics(one_hot([0] * 10), labels, CLASSES)
    assert metrics["accuracy"] == pytest.approx(0.6)
    assert metrics["balanced_accuracy"] == pytest.approx(1 / 3)


def test_auroc_perfect_ranking_and_single_class_nan():
    labels = torch.tensor([0, 1, 2, 0])
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    assert classification_metrics(probs, labels, CLASSES)["auroc"] == pytest.approx(1.0)
    assert math.isnan(classification_metrics(probs[:1], labels[:1], CLASSES)["auroc"])


def test_auroc_over_present_classes_without_warning(recwarn):
    """A test fold without one class (grouped folds): AUROC averages the two present classes, silently."""
    labels = torch.tensor([0, 1, 0, 1])
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.4, 0.5, 0.1], [0.6, 0.3, 0.1]])
    metrics = classification_metrics(probs, labels, CLASSES)
    assert metrics["auroc"] == pytest.approx((0.75 + 0.75) / 2)
    assert math.isnan(metrics["recall/c"])
    assert not [w for w in recwarn if "No positive samples" in str(w.message)]


def test_confusion_matrix_rows_are_true_classes():
    labels = torch.tensor([0, 0, 1, 2])
    matrix = confusion_matrix(one_hot([0, 1, 1, 0]), labels, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


@pytest.mark.filterwarnings("ignore:No positive samples")
@pytest.mark.parametrize("seed", range(4))
def test_confusion_metrics_agree_with_classification_metrics(seed):
    """From the confusion matrix alone: the same values as from the probabilities (absent and never-predicted
    classes included)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3 if seed else 2, (40,), generator=generator)  # seed 0: class c never occurs
    probs = torch.rand(40, 3, generator=generator).softmax(dim=1)
    expected = classification_metrics(probs, labels, CLASSES)
    found = confusion_metrics(confusion_matrix(probs, labels, 3), CLASSES)
    assert found.keys() == expected.keys() - {"auroc"}
    for key, value in found.items():
        assert value == pytest.approx(expected[key], nan_ok=True), key
