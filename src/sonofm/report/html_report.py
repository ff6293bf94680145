"""A self-contained HTML report from a small typed description: text, tables and PNG figures embedded as data URIs.

The page has inline CSS, no scripts and no external resources, so it opens offline and can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from sonofm.atomic import atomic_write_text
from sonofm.errors import SonofmError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #446; padding-bottom: .2em; }
h2 { margin-top: 1.8em; color: #335; }
table { border-collapse: collapse; margin: .8em 0; }
th, td { border: 1px solid #bbb; padding: .3em .7em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #eef; }
figure { display: inline-block; margin: .5em 1em .5em 0; vertical-align: top; max-width: 47%; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .9em; color: #555; }
p.note { color: #555; font-size: .95em; }
"""


@dataclass(frozen=True)
class Table:
    """A table: ``header`` (C,) and ``rows`` (R, C); float cells are shown with 4 decimals, right-aligned."""

    header: list[str]
    rows: list[list[str | float | int]]
    caption: str = ""


@dataclass(frozen=True)
class Figure:
    """A PNG file to embed, with a caption."""

    path: Path
    caption: str = ""


@dataclass(frozen=True)
class Section:
    """A titled section: paragraphs, then tables, then figures (each list may be empty)."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


def png_data_uri(path: str | Path) -> str:
    """``data:image/png;base64,...`` of the PNG file ``path``; SonofmError when it is missing or not a PNG."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SonofmError(f"report image missing or unreadable: {path} ({exc.strerror or exc})") from None
    if not data.startswith(PNG_SIGNATURE):
        raise SonofmError(f"report image is not a PNG file: {path}")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def render_html(title: str, sections: list[Section]) -> str:
    """The whole page as a string (every text escaped, every figure embedded)."""
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{_text(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>", f"<h1>{_text(title)}</h1>"]
    for section in sections:
        parts.append(f"<section><h2>{_text(section.title)}</h2>")
        parts.extend(f"<p>{_text(paragraph)}</p>" for paragraph in section.paragraphs)
        parts.extend(_table(table) for table in section.tables)
        parts.extend(_figure(figure) for figure in section.figures)
        parts.append("</section>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def write_report(path: str | Path, title: str, sections: list[Section]) -> Path:
    """Render and write the page atomically; returns ``path``."""
    return atomic_write_text(path, render_html(title, sections))


def _text(value: object) -> str:
    return html.escape(str(value), quote=True)


def _cell(value: str | float | int) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4f}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{_text(value)}</td>"


def _table(table: Table) -> str:
    rows = ["<table>"]
    if table.caption:
        rows.append(f"<caption>{_text(table.caption)}</caption>")
    rows.append("<tr>" + "".join(f"<th>{_text(name)}</th>" for name in table.header) + "</tr>")
    for row in table.rows:
        if len(row) != len(table.header):
            raise SonofmError(f"report table {table.caption or table.header!r}: a row has {len(row)} cells, "
                              f"the header {len(table.header)}")
        rows.append("<tr>" + "".join(_cell(value) for value in row) + "</tr>")
    rows.append("</table>")
    return "\n".join(rows)


def _figure(figure: Figure) -> str:
    caption = _text(figure.caption)
    return (f'<figure><img src="{png_data_uri(figure.path)}" alt="{caption}">'
            f"<figcaption>{caption}</figcaption></figure>")
