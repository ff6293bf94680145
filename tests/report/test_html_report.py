"""The HTML report builder: escaping, PNG embedding, clear errors."""

import base64

import numpy as np
import pytest
from PIL import Image

from sonofm.errors import SonofmError
from sonofm.report import Figure, Section, Table, png_data_uri, render_html, write_report


def _png(path, value=128):
    Image.fromarray(np.full((4, 6), value, np.uint8)).save(path)
    return path


def test_text_and_cells_are_escaped():
    page = render_html("a <b> & c", [Section("s <1>", ["x < y & \"z\""], [Table(["<h>"], [["<td>"], [0.5], [3]])])])
    assert "<title>a &lt;b&gt; &amp; c</title>" in page
    assert "x &lt; y &amp; &quot;z&quot;" in page
    assert "<th>&lt;h&gt;</th>" in page and "<td>&lt;td&gt;</td>" in page
    assert '<td class="num">0.5000</td>' in page and '<td class="num">3</td>' in page
    assert "<script" not in page and "http" not in page


def test_figures_are_embedded_as_png_data_uris(tmp_path):
    path = _png(tmp_path / "f.png")
    page = render_html("t", [Section("s", figures=[Figure(path, "cap")])])
    uri = png_data_uri(path)
    assert f'<img src="{uri}" alt="cap">' in page
    assert base64.b64decode(uri.split(",", 1)[1]) == path.read_bytes()
    written = write_report(tmp_path / "r.html", "t", [Section("s", figures=[Figure(path)])])
    assert written.read_text().count("data:image/png;base64,") == 1


def test_missing_or_wrong_image_is_a_clear_error(tmp_path):
    with pytest.raises(SonofmError, match="report image missing or unreadable: .*nope.png"):
        render_html("t", [Section("s", figures=[Figure(tmp_path / "nope.png")])])
    (tmp_path / "x.png").write_text("not a png")
    with pytest.raises(SonofmError, match="not a PNG file: .*x.png"):
        png_data_uri(tmp_path / "x.png")


def test_ragged_table_row_is_an_error():
    with pytest.raises(SonofmError, match="a row has 1 cells, the header 2"):
        render_html("t", [Section("s", tables=[Table(["a", "b"], [["only"]], "cap")])])
