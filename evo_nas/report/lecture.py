"""The lecture's two figures: ImageNet top-1 against mult-adds and against parameters in the
mobile setting, the published architectures (evo_nas.published) with evonas's own counts of the
cells it builds placed among them, as plain plotly dicts.   [stdlib; plotly only in `page`]

A published point is the paper's (top-1, count). An evonas point is the same cell counted by
evonas in DARTS' ImageNet network, at the paper's top-1, joined to the paper's point by a dotted
line: the gap is a different skeleton or a different way of counting (docs/reference-cells.md).
A cell with no ImageNet accuracy (one a search found) is a vertical line at its count.
"""

from __future__ import annotations

import html

from evo_nas.published import EVONAS_IMAGENET, MOBILE_MULT_ADDS, PUBLISHED, Published, by_mult_adds

BLUE, ORANGE, GREEN, RED, GREY = "#4c78a8", "#ff9f1c", "#2ca02c", "#d62728", "#888888"
AXIS = {"gridcolor": "#e8e8e8", "linecolor": "#999", "showline": True, "zeroline": False, "ticks": "outside"}
MEASURES = {"mult_adds": ("mult-adds per 224x224 image (M)", 1), "params": ("parameters (M)", 0)}


def figures(own: list[dict] = ()) -> list[dict]:
    """[top-1 vs mult-adds, top-1 vs parameters]. `own`: cells to place, each {"name", "params",
    "macs"} as evonas counts them in the imagenet skeleton."""
    return [figure("mult_adds", own), figure("params", own)]


def figure(measure: str, own: list[dict] = ()) -> dict:
    title, evonas_index = MEASURES[measure]
    low, high = min(p.top1 for p in PUBLISHED) - 1, max(p.top1 for p in PUBLISHED) + 1
    traces = [_published(kind, label, symbol, measure) for kind, label, symbol in
              (("search", "found by search (paper)", "circle"), ("manual", "designed by hand (paper)", "square"))]
    traces += _evonas(measure, evonas_index)
    colours = (RED, "#9467bd", "#8c564b")
    traces += [_own(cell, measure, low, high, colours[i % len(colours)]) for i, cell in enumerate(own)]
    layout = {"title": {"text": f"ImageNet top-1 against {title.split(' (')[0]}, mobile setting"},
              "xaxis": {**AXIS, "title": {"text": title}}, "yaxis": {**AXIS, "title": {"text": "top-1 accuracy (%)"},
                                                                    "range": [low, high]},
              "height": 520, "legend": {"orientation": "h", "y": -0.18}, "margin": {"t": 60}}
    if measure == "mult_adds":
        layout.update(_mobile_limit())
    return {"data": traces, "layout": layout}


def _mobile_limit() -> dict:
    """The mobile setting's 600M as a dotted vertical line, labelled."""
    x = MOBILE_MULT_ADDS / 1e6
    return {"shapes": [{"type": "line", "x0": x, "x1": x, "yref": "paper", "y0": 0, "y1": 1,
                        "line": {"color": GREY, "dash": "dot", "width": 1}}],
            "annotations": [{"x": x, "y": 1, "yref": "paper", "text": "600M: the mobile limit", "showarrow": False,
                             "xanchor": "left", "font": {"color": GREY, "size": 11}}]}


def _published(kind: str, label: str, symbol: str, measure: str) -> dict:
    rows = [p for p in PUBLISHED if p.designed == kind]
    order = sorted(PUBLISHED, key=lambda p: getattr(p, measure))
    where = {p.name: ("top center", "bottom center")[order.index(p) % 2] for p in rows}  # neighbours' labels apart
    return {"type": "scatter", "mode": "markers+text", "name": label, "x": [getattr(p, measure) for p in rows],
            "y": [p.top1 for p in rows], "text": [p.name for p in rows], "textposition": [where[p.name] for p in rows],
            "marker": {"symbol": symbol, "size": 10, "color": BLUE if kind == "search" else ORANGE},
            "hovertext": [_hover(p) for p in rows], "hoverinfo": "text"}


def _evonas(measure: str, index: int) -> list[dict]:
    """The published cells evonas builds: its counts, and a dotted line to the paper's point."""
    rows = [p for p in PUBLISHED if p.genome in EVONAS_IMAGENET]
    xs = [EVONAS_IMAGENET[p.genome][index] / 1e6 for p in rows]
    line_x, line_y = [], []
    for p, x in zip(rows, xs):
        line_x += [getattr(p, measure), x, None]
        line_y += [p.top1, p.top1, None]
    hovers = [f"<b>{html.escape(p.name)}</b>, counted by evonas in DARTS' ImageNet network<br>"
              f"{EVONAS_IMAGENET[p.genome][0]:,} parameters, {EVONAS_IMAGENET[p.genome][1]:,} MACs<br>"
              f"top-1: the paper's ({p.top1}%)" for p in rows]
    return [{"type": "scatter", "mode": "lines", "x": line_x, "y": line_y, "showlegend": False, "hoverinfo": "skip",
             "line": {"color": GREEN, "dash": "dot", "width": 1}},
            {"type": "scatter", "mode": "markers", "name": "the same cell, evonas's count", "x": xs,
             "y": [p.top1 for p in rows], "marker": {"symbol": "diamond-open", "size": 11, "color": GREEN,
                                                     "line": {"width": 2}},
             "hovertext": hovers, "hoverinfo": "text"}]


def _own(cell: dict, measure: str, low: float, high: float, colour: str) -> dict:
    x = (cell["macs"] if measure == "mult_adds" else cell["params"]) / 1e6
    text = (f"<b>{html.escape(cell['name'])}</b> (evonas's count; no ImageNet accuracy)<br>"
            f"{cell['params']:,} parameters, {cell['macs']:,} MACs")
    return {"type": "scatter", "mode": "lines", "name": f"{cell['name']} (evonas's count)", "x": [x, x],
            "y": [low, high], "line": {"color": colour, "dash": "dash", "width": 2}, "hovertext": [text, text],
            "hoverinfo": "text"}


def _hover(p: Published) -> str:
    lines = [f"<b>{html.escape(p.name)}</b>: {p.top1}% top-1, {p.params}M parameters, {p.mult_adds:g}M mult-adds",
             html.escape(p.source)]
    return "<br>".join(lines + ([html.escape(p.note)] if p.note else []))


def rows(own: list[dict] = ()) -> list[dict]:
    """The comparison as a table, by mult-adds: each published architecture (with evonas's
    counts of the same cell where it builds it), then `own`."""
    out = []
    for p in by_mult_adds():
        counts = EVONAS_IMAGENET.get(p.genome)
        out.append({"name": p.name, "designed": p.designed, "top1": p.top1, "params_m": p.params,
                    "mult_adds_m": p.mult_adds, "evonas_params": counts[0] if counts else None,
                    "evonas_macs": counts[1] if counts else None, "source": p.source, "note": p.note})
    for cell in own:
        out.append({"name": cell["name"], "designed": "this genome", "top1": None, "params_m": None,
                    "mult_adds_m": None, "evonas_params": cell["params"], "evonas_macs": cell["macs"],
                    "source": "evonas inspect --skeleton imagenet", "note": ""})
    return out


def page(figs: list[dict], title: str) -> str:
    """The figures as one self-contained HTML page (plotly.js inline, so it opens offline)."""
    import plotly.io as pio

    divs = [pio.to_html(fig, include_plotlyjs=i == 0, full_html=False) for i, fig in enumerate(figs)]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body style='font-family: system-ui, sans-serif; max-width: 1100px; margin: auto'>"
            f"<h1>{html.escape(title)}</h1>{''.join(divs)}<p>Sources: "
            f"{'; '.join(sorted({html.escape(p.source) for p in PUBLISHED}))}.</p></body></html>")
