"""Self-contained HTML reports (inline CSS, figures embedded as base64 PNG data URIs)."""

from sonofm.report.html_report import Figure, Section, Table, png_data_uri, render_html, write_report

__all__ = ["Figure", "Section", "Table", "png_data_uri", "render_html", "write_report"]
