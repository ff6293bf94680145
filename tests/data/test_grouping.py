"""Grouping that keeps one patient's images in one split: common case columns in any letter case, DICOM patient ids
(digested), ``--group-by filename-prefix`` and ``none``, and a one-line hint when ungrouped data look grouped."""

import numpy as np
import pydicom
import pytest
from PIL import Image

from sonofm.cli.main import main
from sonofm.data.grouping import filename_prefix
from sonofm.data.layouts import load_index


def class_folders(root, names_by_class, labels=None):
    """``root/<class>/<name>.png`` images; ``labels``: header and rows of a ``labels.csv`` at the root."""
    rng = np.random.default_rng(0)
    for label, names in names_by_class.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for name in names:
            Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(root / label / f"{name}.png")
    if labels:
        header, rows = labels
        (root / "labels.csv").write_text("\n".join([",".join(header), *(",".join(row) for row in rows)]) + "\n")
    return root


NAMES = {"a": ["p1_1", "p1_2", "p2_1", "p2_2"], "b": ["p3_1", "p3_2", "p4_1", "p4_2"]}


@pytest.mark.parametrize("column", ["case_id", "Case_ID", "StudyInstanceUID", "exam", "PatientID"])
def test_a_common_case_column_groups_without_flags(tmp_path, column):
    rows = [(name, name.split("_")[0]) for names in NAMES.values() for name in names]
    index = load_index(class_folders(tmp_path, NAMES, (["name", column], rows)))
    assert index.group_column == column and index.grouping_hint is None
    assert {sample.name: sample.group for sample in index.samples} == dict(rows)


def test_an_unknown_repeating_column_gets_a_hint_and_group_by_uses_it(tmp_path):
    rows = [(name, f"visit-{name.split('_')[0]}", "0.25") for names in NAMES.values() for name in names]
    root = class_folders(tmp_path, NAMES, (["name", "visit", "pixel_size_mm"], rows))
    index = load_index(root)
    assert index.group_column is None
    assert "labels.csv column 'visit' repeats across images (2 share 'visit-p1')" in index.grouping_hint
    assert "--group-by visit" in index.grouping_hint and "--group-by none" in index.grouping_hint
    grouped = load_index(root, group_by="visit")
    assert grouped.grouping_hint is None and len({sample.group for sample in grouped.samples}) == 4
    assert load_index(root, group_by="none").grouping_hint is None


def test_measurements_and_classes_do_not_look_like_cases(tmp_path):
    names = {label: [f"{label}{number}" for number in range(4)] for label in ("a", "b")}
    rows = [(name, label, "0.25" if name.endswith(("0", "1")) else "0.5")
            for label, label_names in names.items() for name in label_names]
    index = load_index(class_folders(tmp_path, names, (["name", "class", "pixel_size_mm"], rows)))
    assert index.group_column is None and index.grouping_hint is None


def test_shared_file_name_prefixes_get_a_hint_and_can_group(tmp_path, capsys):
    names = {"a": [f"case{case}_frame{frame:03d}" for case in (1, 2, 3) for frame in (1, 2)],
             "b": [f"case{case}_frame{frame:03d}" for case in (4, 5, 6) for frame in (1, 2)]}
    root = class_folders(tmp_path, names)
    index = load_index(root)
    assert "file names share case prefixes (2 start with 'case1')" in index.grouping_hint
    assert "--group-by filename-prefix" in index.grouping_hint
    grouped = load_index(root, group_by="filename-prefix")
    assert grouped.group_column == "filename-prefix"
    assert sorted({sample.group for sample in grouped.samples}) == [f"case{case}" for case in range(1, 7)]
    assert main(["data", "check", str(root)]) == 0
    assert "warning: images are not grouped, but file names share case prefixes" in capsys.readouterr().out
    assert filename_prefix("benign (12).png") == "benign" and filename_prefix("pat3_0007.jpg") == "pat3"


def test_dicom_files_are_grouped_by_a_digest_of_their_patient_id(tmp_path, media):
    for label, patients in (("a", ["P1", "P1", "P2"]), ("b", ["P3", "P4", "P4"])):
        (tmp_path / label).mkdir()
        for number, patient in enumerate(patients):
            path = media.dicom(tmp_path / label / f"{number}.dcm", np.zeros((1, 16, 16), np.uint8))
            dataset = pydicom.dcmread(path)
            dataset.PatientID = patient
            dataset.save_as(path)
    index = load_index(tmp_path)
    assert index.group_column == "DICOM PatientID/StudyInstanceUID"
    groups = [sample.group for sample in index.samples]
    assert groups[0] == groups[1] != groups[2] and groups[3] != groups[4] == groups[5]
    assert all(group.startswith("dicom-") and "P" not in group.removeprefix("dicom-") for group in groups)


def test_dicom_files_that_all_carry_one_patient_id_are_grouped_by_file_with_a_hint(tmp_path, media):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for number in range(2):
            media.dicom(tmp_path / label / f"{number}.dcm", np.zeros((1, 16, 16), np.uint8))  # one fixed PatientID
    index = load_index(tmp_path)
    assert index.group_column is None and len({sample.group for sample in index.samples}) == 4
    assert "all 4 DICOM files carry the same PatientID/StudyInstanceUID" in index.grouping_hint
    assert load_index(tmp_path, group_by="none").grouping_hint is None
