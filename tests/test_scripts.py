"""The shell scripts in ``scripts/`` that users run by hand."""

import subprocess
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def test_pretraining_study_names_the_missing_folder_before_running_anything(tmp_path):
    (tmp_path / "unlabeled").mkdir()
    done = subprocess.run(["bash", str(SCRIPTS / "pretraining-study.sh"), str(tmp_path), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == f"pretraining-study: no folder {tmp_path}/cls (DATA is ../shared/data's layout)"
    assert not (tmp_path / "out").exists()
