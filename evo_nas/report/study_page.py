"""How the study looks: a results table per algorithm, best-so-far curves with labelled bands of
one standard deviation, and each search's hypervolume against the whole space's.   [plotly]"""

from __future__ import annotations

import html
import statistics

import plotly.graph_objects as go
from plotly.colors import DEFAULT_PLOTLY_COLORS
from plotly.subplots import make_subplots

from evo_nas.report.html import GENERATOR


def figure(result):
    """Mean best-so-far against evaluations, one colour per algorithm, band = ±1 std."""
    cfg = result.config
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "best 12-epoch validation accuracy so far (%)", "200-epoch test accuracy of that network (%)"))
    x = list(range(1, cfg.budget + 1))
    for n, a in enumerate(cfg.algorithms):
        color = _colour(n)
        for col, kind in enumerate(("val", "test"), start=1):
            mean, std = _mean_std(result.curves[a][kind])
            band = [m + s for m, s in zip(mean, std)] + [m - s for m, s in zip(mean[::-1], std[::-1])]
            fig.add_trace(go.Scatter(x=x + x[::-1], y=band, fill="toself", fillcolor=_faint(color),
                                     line={"width": 0}, hoverinfo="skip", legendgroup=a, showlegend=col == 1,
                                     name=f"{a}: ±1 sd over {len(result.curves[a][kind])} seeds"), 1, col)
            fig.add_trace(go.Scatter(x=x, y=mean, name=f"{a}: mean", line={"color": color}, legendgroup=a,
                                     showlegend=col == 1), 1, col)
    if result.target is not None:
        fig.add_hline(y=result.target, line_dash="dot", row=1, col=2,
                      annotation_text=f"random search's final mean {result.target:.2f}")
    fig.update_xaxes(title_text="evaluations (distinct networks)")
    fig.update_layout(title=f"NAS-Bench-201 {cfg.dataset}: {cfg.seeds} seeds, budget {cfg.budget}", height=520,
                      legend={"orientation": "h", "y": -0.2}, paper_bgcolor="white", plot_bgcolor="white")
    return fig


def hypervolume_figure(result):
    """Each search's hypervolume of (validation error, params), per algorithm, and the space's."""
    fig = go.Figure()
    for n, a in enumerate(result.config.algorithms):
        fig.add_trace(go.Box(y=[r["hypervolume"] for r in result.rows if r["algorithm"] == a], name=a,
                             boxpoints="all", jitter=0.4, pointpos=0, marker={"color": _colour(n), "size": 4},
                             line={"color": _colour(n)}, hoverinfo="y+name"))
    fig.add_hline(y=result.space_hv, line_dash="dash", line_color="#555",
                  annotation_text=f"all 15,625 cells: {result.space_hv:.4f}", annotation_position="top left")
    fig.update_layout(title="Hypervolume of (validation error, params) of everything each search evaluated",
                      yaxis_title="hypervolume (fraction of the reference box)", height=440, showlegend=False,
                      paper_bgcolor="white", plot_bgcolor="white")
    return fig


def results_table(result) -> str:
    from evo_nas.study import algorithm_table

    target = "random search's final mean" + (f" ({result.target:.2f})" if result.target is not None else "")
    header = ["algorithm", "seeds", "test accuracy (%), mean ± sd", "min – max", f"evaluations to reach {target}",
              "seeds reaching it alone", "hypervolume, mean ± sd", "gap to the space"]
    rows = []
    for t in algorithm_table(result):
        k = t["evals_to_match"]
        reach = ("n/a (random not run)" if result.target is None else
                 str(k) if k is not None else f"not within {result.config.budget}")
        rows.append([t["algorithm"], str(t["seeds"]), f"{t['test_mean']:.2f} ± {t['test_sd']:.2f}",
                     f"{t['test_min']:.2f} – {t['test_max']:.2f}", reach, f"{t['seeds_matching']}/{t['seeds']}",
                     f"{t['hv_mean']:.4f} ± {t['hv_sd']:.4f}", f"{t['hv_gap']:.4f}"])
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table id='results'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
body { font-family: system-ui, sans-serif; max-width: 1400px; margin: 0 auto; padding: 16px 24px; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 4px 10px; text-align: left; }
th { background: #f6f6f6; } td:not(:first-child) { text-align: right; white-space: nowrap; }
.note { color: #666; font-size: 13px; }
"""


def render(result) -> str:
    """The study as one self-contained page (plotly.js inline)."""
    cfg = result.config
    plots = [figure(result).to_html(include_plotlyjs=True, full_html=False),
             hypervolume_figure(result).to_html(include_plotlyjs=False, full_html=False)]
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>{GENERATOR}<title>evonas study: "
            f"NAS-Bench-201 {html.escape(cfg.dataset)}</title><style>{CSS}</style></head><body>"
            f"<h1>NAS-Bench-201 {html.escape(cfg.dataset)}: {', '.join(cfg.algorithms)}</h1>"
            f"<p class='note'>{cfg.seeds} seeds (from {cfg.first_seed}), a budget of {cfg.budget} distinct networks "
            f"per search. Fitness: the table's 12-epoch validation accuracy; reported: the 200-epoch test accuracy "
            f"of the best network by that fitness (the benchmark's protocol). The best test accuracy in the space is "
            f"{result.optimum_test:.2f}%; the study took {result.seconds:.1f} s. docs/study.md has the details."
            f"</p>{results_table(result)}" + "".join(plots) + "</body></html>\n")


def _colour(n: int) -> str:
    return DEFAULT_PLOTLY_COLORS[n % len(DEFAULT_PLOTLY_COLORS)]


def _mean_std(curves: list[list[float]]) -> tuple[list[float], list[float]]:
    cols = list(zip(*curves))
    return ([statistics.fmean(c) for c in cols],
            [statistics.stdev(c) if len(c) > 1 else 0.0 for c in cols])


def _faint(rgb: str) -> str:
    return rgb.replace("rgb(", "rgba(").replace(")", ", 0.2)")
