"""One self-contained HTML page: plotly.js inlined once (works offline, no CDN), figures as
divs, tables, a SYNTHETIC banner when the data is synthetic, and a small sorter for the
tables marked sortable (click a header; numbers sort as numbers)."""

from __future__ import annotations

import html
from dataclasses import dataclass

import plotly.graph_objects as go
import plotly.offline

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #212121; }
header { padding: 18px 28px 10px; border-bottom: 1px solid #e0e0e0; }
h1 { font-size: 22px; margin: 0 0 6px; } h2 { font-size: 17px; margin: 26px 0 8px; }
main { padding: 0 28px 40px; max-width: 1400px; }
.synthetic { background: #b71c1c; color: #fff; font-weight: 700; padding: 6px 28px; letter-spacing: .04em; }
.meta { color: #555; margin: 2px 0; } .score { font-size: 16px; margin: 8px 0 2px; }
.note { color: #616161; font-size: 13px; margin: 4px 0 10px; }
.grid { display: grid; grid-template-columns: minmax(320px, 1fr) minmax(320px, 1fr); gap: 18px; }
table { border-collapse: collapse; font-size: 12.5px; }
th, td { padding: 3px 9px; border-bottom: 1px solid #eee; text-align: left; white-space: nowrap; }
th { background: #fafafa; position: sticky; top: 0; } .num { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th { cursor: pointer; user-select: none; } table.sortable th:hover { background: #eef3fb; }
th.asc::after { content: " \\25B2"; } th.desc::after { content: " \\25BC"; }
.scroll { max-height: 620px; overflow: auto; border: 1px solid #e0e0e0; display: inline-block; max-width: 100%; }
"""

SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("asc", "desc"); });
      th.classList.add(asc ? "asc" : "desc");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(r) { var v = r.cells[col].getAttribute("data-v");
                        return /^[-+]?[0-9.]+(e[-+]?[0-9]+)?$/i.test(v) ? parseFloat(v) : v; }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === "" || y === "") { return x === y ? 0 : (x === "" ? 1 : -1); }
        var c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


@dataclass(frozen=True)
class Section:
    title: str
    body: str  # HTML
    note: str = ""


def figure_div(fig: go.Figure, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def page(title: str, synthetic: bool, meta_lines: list[str], sections: list[Section]) -> str:
    """The whole document; `meta_lines` and section notes are plain text (escaped here)."""
    banner = ('<div class="synthetic">SYNTHETIC DATA: generated prices, not a market. Nothing '
              'here says anything about real trading.</div>') if synthetic else ""
    meta = "\n".join(f'<p class="{"score" if i == 0 else "meta"}">{html.escape(s)}</p>'
                     for i, s in enumerate(meta_lines))
    parts = []
    for s in sections:
        note = f'<p class="note">{html.escape(s.note)}</p>' if s.note else ""
        parts.append(f"<section><h2>{html.escape(s.title)}</h2>{note}{s.body}</section>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style>"
            f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script></head>\n'
            f"<body>{banner}<header><h1>{html.escape(title)}</h1>{meta}</header>\n"
            f"<main>{''.join(parts)}</main><script>{SORT_JS}</script></body></html>\n")
