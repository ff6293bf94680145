"""Fine-tune a classifier with sonofm's Python functions, then load it and predict, as a notebook would.

    .venv/bin/python examples/finetune_and_predict.py                    # on sonofm's phantom images, a minute on a CPU
    .venv/bin/python examples/finetune_and_predict.py --data DATASET --out runs/my_cls --model resnet18 --epochs 20
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import sonofm
from sonofm.data.phantom import write_phantom_dataset
from sonofm.tasks.cls.finetune import ClsFinetuneConfig, finetune_classifier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="a classification dataset folder (default: phantom images)")
    parser.add_argument("--out", help="run folder (default: a temporary one)")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--img-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else write_phantom_dataset(Path(tmp) / "phantom", n_per_class=24,
                                                                       size=args.img_size) / "cls"
        out = Path(args.out) if args.out else Path(tmp) / "run"
        config = ClsFinetuneConfig(data=str(data), model=args.model, img_size=args.img_size, epochs=args.epochs,
                                   num_workers=0, progress=False)
        metrics = finetune_classifier(config, out, echo=lambda line: None)
        print(f"test balanced accuracy {metrics['test/balanced_accuracy']:.3f}")

        model = sonofm.load(out)
        images = sorted(path for path in data.rglob("*.png"))[:3]
        for path, probabilities in zip(images, model.predict(images)):
            best = max(probabilities, key=probabilities.get)
            print(f"{path.name}: {best} ({probabilities[best]:.2f})")


if __name__ == "__main__":
    main()
