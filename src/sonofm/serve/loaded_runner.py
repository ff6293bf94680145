"""What every page runner of a ``sonofm.load`` model keeps: the model, its precision, classes and input size."""

from __future__ import annotations

from sonofm.api import LoadedModel


class LoadedModelRunner:
    """Base of the classifier, segmenter and enhancer runners; ``task`` names the page's view."""

    task: str

    def __init__(self, loaded: LoadedModel, precision: str) -> None:
        self.loaded = loaded
        self.precision = precision
        self.classes = loaded.classes
        self.img_size = loaded.loaded.img_size
