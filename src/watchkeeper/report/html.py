"""The report page: one self-contained HTML file with plotly.js embedded once and every chart inline.

Nothing is fetched when the page opens (no CDN, no fonts, no MathJax), so it works offline
and from an attachment; the charts are drawn by plotly.js in the browser (hover, zoom).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

__all__ = ["figure_div", "page", "slug"]

PLOTLY_CONFIG = {"displayModeBar": False, "responsive": True}  # zoom by dragging, double-click resets

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d2733;
       background: #f5f7fa; }
header { background: #1f4e79; color: white; padding: 14px 28px; }
header h1 { margin: 0 0 4px 0; font-size: 22px; }
header p { margin: 0; opacity: 0.85; font-size: 13px; }
nav { padding: 8px 28px; background: #e4ebf2; font-size: 14px; }
nav a { margin-right: 18px; color: #1f4e79; }
main { padding: 8px 28px 40px 28px; max-width: 1500px; }
section.model { background: white; border-radius: 6px; padding: 6px 20px 20px 20px; margin: 18px 0;
                box-shadow: 0 1px 3px rgba(0,0,0,0.08); }
h2 { border-bottom: 2px solid #1f4e79; padding-bottom: 4px; }
h3 { margin-top: 28px; color: #1f4e79; }
ul.summary { font-size: 14px; line-height: 1.5; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 8px 16px; }
.figure { min-width: 0; }
p.note { color: #5d6d7e; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px 0; width: 100%; }
th, td { border-bottom: 1px solid #e1e6eb; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f0f3f6; }
td:first-child { white-space: nowrap; }
tr.insufficient td { color: #8a8a8a; font-style: italic; }
span.status { padding: 1px 6px; border-radius: 3px; color: white; font-size: 12px; }
span.firing { background: #c0392b; }
span.resolved { background: #27ae60; }
code { font-size: 12px; }
details summary { cursor: pointer; color: #1f4e79; margin: 6px 0; }
"""


def slug(text: str) -> str:
    """``text`` made safe for an HTML id (letters, digits, ``-`` and ``_``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


def figure_div(figure: go.Figure, div_id: str) -> str:
    """The chart as a ``div`` and the script that draws it (plotly.js itself is in the page head)."""
    drawn = figure.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOTLY_CONFIG)
    return f'<div class="figure">{drawn}</div>'


def page(title: str, subtitle: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document; ``sections`` are ``(id, link text, html)``."""
    nav = "".join(f'<a href="#{escape(section_id)}">{escape(label)}</a>' for section_id, label, _ in sections)
    body = "\n".join(html for _, _, html in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>\n'
        f"<body><header><h1>{escape(title)}</h1><p>{escape(subtitle)}</p></header>"
        f"<nav>{nav}</nav><main>{body}</main></body></html>\n"
    )
