"""How a fidelity measurement looks: its summary's lines, and proxy against reference accuracy
with the seeds' spread as error bars, drawn through report.shell from the summary and lines
evo_nas.fidelity computed.   [stdlib]"""

from __future__ import annotations

import html
import statistics

from evo_nas.report.shell import guide, plot, render


def render_page(name: str, summary: dict, lines: list[str]) -> str:
    rows = [r for r in summary["rows"] if r["reference_mean"] is not None]

    def sd(values):
        return statistics.stdev(values) if len(values) > 1 else 0.0

    trace = {"type": "scatter", "mode": "markers", "name": "genomes",
             "x": [r["reference_mean"] for r in rows], "y": [r["proxy_mean"] for r in rows],
             "error_x": {"type": "data", "array": [sd(r["reference"]) for r in rows]},
             "error_y": {"type": "data", "array": [sd(r["proxy"]) for r in rows]},
             "text": [f"#{r['id']} {html.escape(r['genome'][:120])}" for r in rows], "hoverinfo": "text+x+y"}
    figure = {"data": [trace], "layout": {
        "title": {"text": f"{summary['usable']} genomes, {summary['repeats']} seeds each", "x": 0, "xref": "paper"},
        "xaxis": {"title": {"text": "reference validation accuracy"}},
        "yaxis": {"title": {"text": "proxy validation accuracy"}}, "height": 560}}
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    return render(f"evonas fidelity: {name}", f"Does the proxy rank? {name}", (
        ("Rank statistics", (f"<ul>{items}</ul>", guide("Kendall's tau with a bootstrap 95% interval; "
                                                        "docs/fidelity.md says what each line measures."))),
        ("Proxy against reference", (plot(figure), guide(
            "One point per genome: its mean accuracy over the seeds at the reference (x) and at the proxy (y); bars: "
            "one standard deviation over the seeds. A proxy that ranks puts the points in the reference's order.")))))
