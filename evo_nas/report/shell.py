"""The page shell every evonas page goes through (the run report and `evonas watch`, the study,
fidelity and lecture pages): one head, style and figure look, the generator tag, plotly.js
inline or shared, numbered sections, the notes on how to read a figure, and the one place
where a missing plotly skips a page. Page modules compute their data first, then hand `render`
its HTML pieces, figures as plotly dicts made divs by `plot`.   [plotly when drawn]
"""

from __future__ import annotations

import html
import importlib
import warnings
from collections.abc import Callable
from pathlib import Path

from evo_nas.errors import UserError
from evo_nas.files import atomic_write

# Every page says who wrote it, so `report --out` can tell its own pages from other files.
GENERATOR = "<meta name='generator' content='evonas report'>"
PLOTLY_FILE = "plotly.min.js"  # the shared copy's name, beside the pages that use it
PLOTLY_JS = ("inline", "shared")
SKIPPED: set[Path] = set()  # pages said to be skipped for want of plotly: one line each per process, not per generation

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1500px;
       padding: 16px 24px; color: #222; }
h1 { margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.facts { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 2px 14px; margin: 8px 0;
         font-size: 14px; } .facts dt { color: #777; } .facts dd { margin: 0; }
.plots { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 8px; }
.plots.two { grid-template-columns: repeat(2, minmax(0, 1fr)); }
@media (max-width: 1200px) { .plots, .plots.two { grid-template-columns: minmax(0, 1fr); } }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f6f6; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.mono { font-family: monospace; font-size: 12px; max-width: 640px; word-break: break-all; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort=ascending]::after { content: " ▲"; }
table.sortable th[aria-sort=descending]::after { content: " ▼"; }
tr.failed td, tr.infeasible td { color: #a33; } tr.cache td { color: #888; }
.scroll { max-height: 640px; overflow: auto; border: 1px solid #e4e4e4; }
.filters { display: flex; gap: 12px; align-items: center; font-size: 13px; margin: 8px 0; }
pre { background: #f7f7f7; border: 1px solid #e4e4e4; padding: 8px; font-size: 12px; overflow-x: auto; }
details { margin: 4px 0; } summary { cursor: pointer; } button.copy { font-size: 12px; margin-left: 8px; }
.warning { background: #fff4e5; border-left: 4px solid #f0a020; padding: 8px 12px; margin: 8px 0; }
.note { color: #666; font-size: 13px; } div.front { display: inline-block; }
#arch-panel { position: fixed; right: 16px; bottom: 16px; background: white; border: 1px solid #bbb;
              box-shadow: 0 2px 10px rgba(0,0,0,.15); padding: 8px 10px; max-width: 46vw; max-height: 70vh;
              overflow: auto; font-size: 12px; z-index: 10; }
#arch-panel button { float: right; border: none; background: none; font-size: 16px; cursor: pointer; }
.arch-head { font-weight: 600; margin-bottom: 4px; }
"""
# Every figure's look, under its own layout: white, the page's font, light grid, the title at the left.
AXIS = {"gridcolor": "#e8e8e8", "linecolor": "#999", "showline": True, "zeroline": False, "ticks": "outside"}
LOOK = {"paper_bgcolor": "white", "plot_bgcolor": "white", "font": {"family": "system-ui, sans-serif", "size": 13},
        "hovermode": "closest", "title": {"x": 0.01}, "template": {"layout": {"xaxis": AXIS, "yaxis": AXIS}}}


class PlotlyMissing(UserError):
    """A page was asked for and plotly is not installed (JSON and CSV outputs never need it)."""


def render(title: str, heading: str, sections=(), intro: str = "", script: str = "",
           plotly_js: str | None = "inline", tail: str = "") -> str:
    """One HTML page: its tab's `title`, the h1 `heading` (plain text), `intro` (HTML), then the
    `sections`, (heading, HTML pieces) pairs numbered when there are several, and the page's own
    `script`. plotly_js: "inline" (plotly.js in the page: it opens offline), "shared" (loaded
    from PLOTLY_FILE beside it) or None (no figures); `tail`: HTML put before </body>."""
    if plotly_js not in (*PLOTLY_JS, None):
        raise ValueError(f"plotly_js: inline or shared, got {plotly_js!r}")
    body = [f"<h1>{html.escape(heading)}</h1>", intro]
    for k, (name, pieces) in enumerate(sections, 1):
        body += [f"<h2>{f'{k}. ' * (len(sections) > 1)}{html.escape(name)}</h2>", *pieces]
    head = {"inline": lambda: f"<script>{plotly_js_text()}</script>", None: lambda: "",
            "shared": lambda: f"<script src='{PLOTLY_FILE}'></script>"}[plotly_js]()
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>{GENERATOR}<title>{html.escape(title)}"
            f"</title><style>{CSS}</style>{head}</head><body>\n" + "\n".join(body)
            + (f"\n<script>{script}</script>" if script else "") + f"\n{tail}</body></html>\n")


def plot(figure: dict, div_id: str | None = None) -> str:
    """A plotly figure (a plain dict) as a div, in LOOK; plotly.js comes with the page, once."""
    figure = {**figure, "layout": {**LOOK, **figure["layout"]}}
    return plotly("plotly.io").to_html(figure, include_plotlyjs=False, full_html=False, div_id=div_id,
                                       config={"displaylogo": False, "responsive": True}, validate=False,
                                       default_height=f"{figure['layout'].get('height', 500)}px")


def guide(text: str) -> str:
    """How to read the figure or table beside it (HTML), in the pages' quiet note style."""
    return f"<p class='note'>{text}</p>"


def table(header: list[str], rows: list[list], numeric: set[int] = frozenset(), mono: set[int] = frozenset(),
          attrs: str = "", row_attrs: list[str] | None = None) -> str:
    """Rows of already-escaped cells; `numeric` columns right-aligned, `mono` ones in monospace. A
    cell may be a (text, sort value) pair (table.sortable sorts by it)."""
    def cell(i: int, content) -> str:
        text, value = content if isinstance(content, tuple) else (content, None)
        kind = " class='num'" if i in numeric else " class='mono'" if i in mono else ""
        return f"<td{kind}{'' if value is None else f' data-v={value!r}'}>{text}</td>"

    head = "".join(f"<th{' class=num' if i in numeric else ''}>{h}</th>" for i, h in enumerate(header))
    body = "".join(f"<tr{a}>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>"
                   for row, a in zip(rows, row_attrs or [""] * len(rows)))
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def plotly_js_text() -> str:
    return plotly("plotly.offline").get_plotlyjs()


def plotly(module: str = "plotly"):
    """A plotly module, or PlotlyMissing (a UserError: one line) where plotly is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise PlotlyMissing("plotly is not installed (pip install plotly), and pages need it") from None


def rendered(path: Path, render: Callable[[], str]) -> str | None:
    """render(), or, where plotly is missing, None and one warning that the page at `path` was
    skipped: every writer writes its JSON and CSV whether or not its page can be drawn."""
    try:
        plotly()
    except PlotlyMissing as err:
        if Path(path) not in SKIPPED:
            warnings.warn(f"{path}: not written: {err}", stacklevel=3)
        SKIPPED.add(Path(path))
        return None
    return render()


def write(path: Path, render: Callable[[], str]) -> Path | None:
    """Write the page render() returns (atomically); None where plotly is missing (`rendered`)."""
    text = rendered(path, render)
    return None if text is None else atomic_write(path, text)
