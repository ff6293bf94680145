"""The --balance weights file: rows by folder or base name, every source needed, bad rows named."""

import pytest

from sonofm.data.source_weights import read_source_weights
from sonofm.errors import SonofmError

NAMES = ["/archive/liver", "/archive/thyroid", "breast"]


def write(tmp_path, text):
    path = tmp_path / "weights.csv"
    path.write_text(text)
    return path


def test_rows_match_a_source_by_its_name_or_base_name(tmp_path):
    path = write(tmp_path, "source,weight\nliver,2\n/archive/thyroid,0.5\nbreast,0\n")
    assert read_source_weights(path, NAMES) == [2.0, 0.5, 0.0]


@pytest.mark.parametrize(("text", "message"), [
    ("liver,1\nthyroid,1\n", "has no weight for source breast"),
    ("liver,1\nthyroid,1\nbreast,1\nkidney,1\n", "row 4 names source 'kidney'; the sources are"),
    ("liver,1\nthyroid,-1\nbreast,1\n", "row 2 weight '-1' must be a number >= 0"),
    ("liver,1\nthyroid,lots\nbreast,1\n", "row 2 weight 'lots' must be a number >= 0"),
    ("liver,1,2\n", "row 1 must be `source,weight`"),
    ("liver,0\nthyroid,0\nbreast,0\n", "every weight is 0"),
])
def test_bad_files_are_refused_naming_the_row(tmp_path, text, message):
    with pytest.raises(SonofmError, match=message):
        read_source_weights(write(tmp_path, text), NAMES)


def test_a_base_name_two_sources_share_must_be_written_in_full(tmp_path):
    names = ["/site_a/images", "/site_b/images"]
    with pytest.raises(SonofmError, match="row 1 names source 'images'"):
        read_source_weights(write(tmp_path, "images,1\n"), names)
    assert read_source_weights(write(tmp_path, "/site_a/images,1\n/site_b/images,3\n"), names) == [1.0, 3.0]
