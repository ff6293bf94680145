"""Which images belong together (one patient, case or video), so that a split never puts them on both sides.

Found, in order: the ``labels.csv`` column named by ``--group-by``; else the first column whose name is a common case
key (:data:`GROUP_COLUMNS`, any letter case); else, for DICOM files, the PatientID (or StudyInstanceUID) in their
headers (as a one-way digest, so no identifier reaches a split file). When none of these applies but the data look
grouped (a ``labels.csv`` column whose values repeat, or file names that share a case prefix), :func:`grouping_hint`
says so in one line; ``--group-by filename-prefix`` groups by that prefix and ``--group-by none`` turns grouping and
the hint off.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

GROUP_COLUMNS = (
    "group", "patient", "patient_id", "patientid", "subject", "subject_id", "subject_prefix", "case", "case_id",
    "study", "study_id", "studyinstanceuid", "exam", "exam_id", "series", "series_id", "seriesinstanceuid", "scan",
    "scan_id", "acquisition_id", "video", "video_id", "clip", "source_file",
)
"""``labels.csv`` columns tried, in order and ignoring letter case, as the grouping key when no column is named."""

NO_GROUPING = "none"
FILENAME_PREFIX = "filename-prefix"
DICOM_GROUPING = "DICOM PatientID/StudyInstanceUID"
NOT_CASE_COLUMNS = ("name", "class", "label", "split", "fold")  # repeat by design

_SIZE = re.compile(r"^\d+(\.\d+)?\s*[x×]\s*\d+(\.\d+)?$")
_FRAME_SUFFIX = re.compile(r"[\s_\-.]*(frame|f|img|image|slice|s)?[\s_\-.(]*\d+\)?$", re.IGNORECASE)


def known_group_column(columns: Sequence[str]) -> str | None:
    """The first of ``columns`` whose name, ignoring case, is in :data:`GROUP_COLUMNS`."""
    by_lower = {column.lower(): column for column in reversed(columns)}
    return next((by_lower[name] for name in GROUP_COLUMNS if name in by_lower), None)


def filename_prefix(name: str) -> str:
    """A file name without its extension and trailing frame number: ``case12_frame003.png`` -> ``case12``."""
    stem = Path(name).stem
    prefix = _FRAME_SUFFIX.sub("", stem)
    return prefix or stem


def grouping_hint(names: Sequence[str], rows: Sequence[dict[str, str]], columns: Sequence[str]) -> str | None:
    """One line naming a likely grouping when images are ungrouped, else None.

    ``names``: the images' file names; ``rows``: their ``labels.csv`` rows (empty dicts without one).
    """
    for column in columns:
        if column.lower() in NOT_CASE_COLUMNS:
            continue
        values = [row.get(column, "") for row in rows if row.get(column)]
        if _repeating_ids(values):
            largest, count = Counter(values).most_common(1)[0]
            return (f"images are not grouped, but labels.csv column {column!r} repeats across images ({count} share "
                    f"{largest!r}): if it names the patient or case, pass --group-by {column} so that its images "
                    "stay in one split (--group-by none silences this)")
    prefixes = [filename_prefix(name) for name in names]
    if _repeating_ids(prefixes) and sum(count for count in Counter(prefixes).values() if count > 1) >= len(names) / 2:
        largest, count = Counter(prefixes).most_common(1)[0]
        return (f"images are not grouped, but file names share case prefixes ({count} start with {largest!r}): if a "
                f"prefix is one patient or clip, pass --group-by {FILENAME_PREFIX} so that its images stay in one "
                "split (--group-by none silences this)")
    return None


def _repeating_ids(values: list[str]) -> bool:
    """Values that look like case ids shared by a few images each: some repeat, none covers more than a quarter of
    the images (a flag or a site would), and they are not measurements (decimals) or sizes (``562x471``)."""
    counts = Counter(values)
    if len(counts) < 3 or len(counts) == len(values) or max(counts.values()) > len(values) / 4:
        return False
    if all(_is_number(value) for value in counts) and any("." in value for value in counts):
        return False
    return not all(_SIZE.match(value) for value in counts)


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True
