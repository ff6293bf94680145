"""Embed a labelled dataset with a run's backbone and score a k-nearest-neighbour classifier on the embeddings
(a quick probe of what a backbone learned), grouped so that one patient's images never vote for each other.

    .venv/bin/python examples/embed_knn.py --run runs/my_cls --data DATASET [--k 5]
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

import sonofm
from sonofm.data.layouts import load_index
from sonofm.data.splits import group_key


def knn_accuracy(run: str, data: str, k: int = 5, folds: int = 5) -> float:
    """Mean grouped-fold accuracy of a k-NN classifier on the run backbone's mean patch embeddings."""
    index = load_index(data, task="cls")
    model = sonofm.load(run)
    embeddings = model.embed([sample.image for sample in index.samples])
    labels = np.array([sample.label for sample in index.samples])
    groups = [group_key(sample) for sample in index.samples]
    splits = GroupKFold(n_splits=min(folds, len(set(groups))))
    scores = cross_val_score(KNeighborsClassifier(n_neighbors=k), embeddings, labels, groups=groups, cv=splits)
    return float(scores.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a finished sonofm run folder (or its model.safetensors)")
    parser.add_argument("--data", required=True, help="a labelled classification dataset")
    parser.add_argument("--k", type=int, default=5)
    args = parser.parse_args()
    print(f"{args.k}-NN accuracy over grouped folds: {knn_accuracy(args.run, args.data, args.k):.3f}")


if __name__ == "__main__":
    main()
