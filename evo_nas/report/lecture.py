"""The lecture's two figures: ImageNet top-1 against mult-adds and against parameters in the
mobile setting, the published architectures (evo_nas.published) with evonas's own counts of the
cells it builds placed among them, as plain plotly dicts.   [stdlib; plotly when `section` draws them]

A published point is the paper's (top-1, count). An evonas point is the same cell counted by
evonas in DARTS' ImageNet network, at the paper's top-1, joined to the paper's point by a dotted
line: the gap is a different skeleton or a different way of counting (docs/reference-cells.md).
A cell with no ImageNet accuracy (one a search found) is a vertical line at its count.
"""

from __future__ import annotations

import html
import math

from evo_nas.published import EVONAS_IMAGENET, MOBILE_MULT_ADDS, PUBLISHED, Published, by_mult_adds
from evo_nas.report.figures import BLUE, GREEN, GREY, ORANGE, RED
from evo_nas.report.shell import guide, plot

MEASURES = {"mult_adds": ("mult-adds per 224x224 image (M)", 1), "params": ("parameters (M)", 0)}
# The names are laid out for the narrowest plot area (px) the figures get, two side by side in a
# 1400 px window (wider, the points move apart); at 11 px a name is 6.4 px per letter, 15 px high.
AREA, LETTER, LINE = (560, 330), 6.4, 15
NAME = {"showarrow": True, "arrowhead": 0, "arrowwidth": 0.7, "arrowcolor": "#999", "standoff": 6, "font": {"size": 11}}


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
    xs = [x for t in traces for x in t["x"] if x is not None]
    pad = 0.06 * (max(xs) - min(xs))
    x_range = [min(xs) - pad, max(xs) + pad]
    layout = {"title": {"text": f"Top-1 against {title.split(' ')[0]}", "x": 0, "xref": "paper"},
              "xaxis": {"title": {"text": title}, "range": x_range},
              "yaxis": {"title": {"text": "top-1 accuracy (%)"}, "range": [low, high]}, "height": 520,
              "legend": {"orientation": "h", "y": -0.2}, "margin": {"t": 50, "b": 140, "l": 60, "r": 20},
              **(_mobile_limit() if measure == "mult_adds" else {})}
    layout["annotations"] = layout.get("annotations", []) + _names(traces, x_range, [low, high])
    return {"data": traces, "layout": layout}


def _names(traces: list[dict], x_range: list[float], y_range: list[float]) -> list[dict]:
    """The published points' names as annotations laid out in AREA so that none covers another,
    a marker or the top edge's label: each, left to right, at the free place nearest its point,
    with a thin line to it. (Plotly's own text positions stack the crowd of names on each other.)"""
    (width, height), (x0, x1), (y0, y1) = AREA, x_range, y_range
    points = [((x - x0) / (x1 - x0) * width, (y1 - y) / (y1 - y0) * height, x, y, name) for t in traces
              if t["mode"] == "markers" for x, y, name in zip(t["x"], t["y"], t.get("text") or [""] * len(t["x"]))]
    taken, names = [(px - 7, py - 7, px + 7, py + 7) for px, py, *_ in points], []
    for px, py, x, y, name in sorted(p for p in points if p[4]):
        box = next(b for b in _places(px, py, LETTER * len(name), LINE) if b[0] >= 0 and b[2] <= width and b[1] >= 12
                   and b[3] <= height and not any(b[0] < t[2] and t[0] < b[2] and b[1] < t[3] and t[1] < b[3]
                                                  for t in taken))
        taken.append(box)
        names.append({"x": x, "y": y, "text": html.escape(name), "ax": (box[0] + box[2]) / 2 - px,
                      "ay": (box[1] + box[3]) / 2 - py, **NAME})
    return names


def _places(px: float, py: float, w: float, h: float):
    """Boxes (left, top, right, bottom) of w x h for the name of the point (px, py), nearest first:
    above, below, right, left, then 16 directions on widening rings."""
    beside = [(0, -h / 2 - 8), (0, h / 2 + 8), (w / 2 + 10, 0), (-w / 2 - 10, 0)]
    rings = [(math.cos(a) * (r + w / 2), math.sin(a) * (r + h / 2)) for r in range(10, 400, 10)
             for a in (math.pi * k / 8 for k in range(16))]
    return ((px + dx - w / 2, py + dy - h / 2, px + dx + w / 2, py + dy + h / 2) for dx, dy in beside + rings)


def _mobile_limit() -> dict:
    """The mobile setting's 600M as a dotted vertical line, labelled."""
    x = MOBILE_MULT_ADDS / 1e6
    return {"shapes": [{"type": "line", "x0": x, "x1": x, "yref": "paper", "y0": 0, "y1": 1,
                        "line": {"color": GREY, "dash": "dot", "width": 1}}],
            "annotations": [{"x": x, "y": 1, "yref": "paper", "text": "600M: the mobile limit", "showarrow": False,
                             "xanchor": "left", "font": {"color": GREY, "size": 11}}]}


def _published(kind: str, label: str, symbol: str, measure: str) -> dict:
    rows = [p for p in PUBLISHED if p.designed == kind]
    return {"type": "scatter", "mode": "markers", "name": label, "x": [getattr(p, measure) for p in rows],
            "y": [p.top1 for p in rows], "text": [p.name for p in rows],  # drawn as laid out by _names
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


def section(own: list[dict] = (), note: str = "") -> tuple[str, tuple[str, ...]]:
    """The two figures as a page section (report.shell): `note`, the plots side by side, sources."""
    by_macs, by_params = figures(own)
    sources = "; ".join(sorted({html.escape(p.source) for p in PUBLISHED}))
    return ("The published cells on ImageNet", (note, "<div class='plots two'>" + plot(by_macs, "plot-published-macs")
                                                + plot(by_params, "plot-published-params") + "</div>",
                                                guide(f"Sources: {sources}.")))
