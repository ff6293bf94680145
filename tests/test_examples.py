"""The scripts in ``examples/`` run end to end on phantom data."""

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_finetune_and_predict_then_embed_and_knn(tmp_path, phantom_set):
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, str(EXAMPLES / "finetune_and_predict.py"), "--out", str(run),
                           "--epochs", "1", "--img-size", "32"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("test balanced accuracy ") and len(done.stdout.splitlines()) == 4
    data = phantom_set(n_per_class=8, size=32, seed=4) / "cls"
    done = subprocess.run([sys.executable, str(EXAMPLES / "embed_knn.py"), "--run", str(run), "--data", str(data),
                           "--k", "3"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    accuracy = float(done.stdout.rsplit(" ", 1)[1])
    assert 0.0 <= accuracy <= 1.0
