"""Self-contained HTML pages of the reports: charts on top, the Markdown report below.

One file opens offline: plotly.js is inlined once in the page head (no CDN), each chart is a
``<div>`` drawn by it, and the Markdown (kept for diffs) is rendered with markdown-it-py.
plotly and markdown-it are imported when a page is built, not when this module is imported,
so the code location stays light.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from mf_pipeline.lib.lake import write_text

if TYPE_CHECKING:
    import plotly.graph_objects as go

NOT_AVAILABLE = "not available"

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1200px; padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
nav a { margin-right: 1rem; } .meta { color: #666; font-size: .9rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: .85rem; display: block;
        overflow-x: auto; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
code { background: #f5f5f5; padding: 0 .2rem; } .figure { margin: 1rem 0; }
"""


@dataclass(frozen=True)
class Section:
    """A titled part of a page: Markdown text (notes, "not available") and figures."""

    title: str
    text: str = ""
    figures: Sequence[go.Figure] = field(default_factory=tuple)


def render_markdown(text: str) -> str:
    """CommonMark with tables; raw HTML in the text is escaped, not passed through."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(text)


def markdown_table(frame: pl.DataFrame) -> str:
    """A small frame as a Markdown table (floats to 4 significant digits, null as n/a)."""

    def cell(value: Any) -> str:
        if value is None:
            return "n/a"
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|")

    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * frame.width
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([head, rule, *rows])


def _anchor(index: int) -> str:
    return f"section-{index}"


def page(title: str, sections: Sequence[Section], markdown: str | None,
         subtitle: str = "") -> str:
    """The whole HTML document. plotly.js is inlined once, and only when there is a chart;
    ``markdown`` None says the Markdown report is not available."""
    import plotly.io as pio
    from plotly.offline import get_plotlyjs

    parts: list[str] = []
    figure_count = 0
    for index, section in enumerate(sections):
        parts.append(f'<section id="{_anchor(index)}"><h2>{html.escape(section.title)}</h2>')
        if section.text:
            parts.append(render_markdown(section.text))
        for fig in section.figures:
            figure_count += 1
            parts.append('<div class="figure">' + pio.to_html(
                fig, full_html=False, include_plotlyjs=False, div_id=f"figure-{figure_count}",
                config={"displaylogo": False, "responsive": True}) + "</div>")
        parts.append("</section>")
    report = (render_markdown(markdown) if markdown is not None
              else f"<p>Markdown report {NOT_AVAILABLE}.</p>")
    nav = " ".join(f'<a href="#{_anchor(i)}">{html.escape(s.title)}</a>'
                   for i, s in enumerate(sections))
    script = (f'<script type="text/javascript">{get_plotlyjs()}</script>'
              if figure_count else "")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style>{script}</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{html.escape(subtitle)}</p>' if subtitle else "",
        f'<nav>{nav} <a href="#report">Report text</a></nav>', *parts,
        f'<section id="report"><h2>Report text</h2>{report}</section>', "</body></html>", ""])


def write_page(target: Path, title: str, sections: Sequence[Section], markdown: str | None,
               subtitle: str = "") -> Path:
    """Write :func:`page` atomically to ``target``."""
    return write_text(page(title, sections, markdown, subtitle), target)
