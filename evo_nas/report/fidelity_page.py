"""How a fidelity measurement looks: proxy against reference accuracy with the seeds' spread as
error bars, and the rank statistics beside it.   [plotly]"""

from __future__ import annotations

import html
import statistics

import plotly.io as pio


def render(summary: dict, name: str) -> str:
    rows = [r for r in summary["rows"] if r["reference_mean"] is not None]

    def sd(values):
        return statistics.stdev(values) if len(values) > 1 else 0.0

    trace = {"type": "scatter", "mode": "markers", "name": "genomes",
             "x": [r["reference_mean"] for r in rows], "y": [r["proxy_mean"] for r in rows],
             "error_x": {"type": "data", "array": [sd(r["reference"]) for r in rows]},
             "error_y": {"type": "data", "array": [sd(r["proxy"]) for r in rows]},
             "text": [f"#{r['id']} {html.escape(r['genome'][:120])}" for r in rows], "hoverinfo": "text+x+y"}
    figure = {"data": [trace], "layout": {
        "title": {"text": f"proxy against reference accuracy ({summary['usable']} genomes, "
                          f"{summary['repeats']} seeds each; bars: one sd over the seeds)"},
        "xaxis": {"title": {"text": "reference validation accuracy"}},
        "yaxis": {"title": {"text": "proxy validation accuracy"}}, "height": 560}}
    from evo_nas.fidelity import lines

    text = "".join(f"<li>{html.escape(line)}</li>" for line in lines(summary))
    plot = pio.to_html(figure, include_plotlyjs=True, full_html=False, validate=False)
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>evonas fidelity: "
            f"{html.escape(name)}</title></head><body style='font-family: system-ui, sans-serif; margin: 24px'>"
            f"<h1>Does the proxy rank? {html.escape(name)}</h1><ul>{text}</ul>{plot}</body></html>\n")
