"""How the study looks: best-so-far curves per algorithm with a band of one standard deviation.   [plotly]"""

from __future__ import annotations

import statistics

import plotly.graph_objects as go
from plotly.colors import DEFAULT_PLOTLY_COLORS
from plotly.subplots import make_subplots


def figure(result):
    """Mean best-so-far against evaluations, one colour per algorithm, band = ±1 std."""
    cfg = result.config
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "best 12-epoch validation accuracy so far (%)", "200-epoch test accuracy of that network (%)"))
    x = list(range(1, cfg.budget + 1))
    for n, a in enumerate(cfg.algorithms):
        color = DEFAULT_PLOTLY_COLORS[n % len(DEFAULT_PLOTLY_COLORS)]
        for col, kind in enumerate(("val", "test"), start=1):
            mean, std = _mean_std(result.curves[a][kind])
            band = [m + s for m, s in zip(mean, std)] + [m - s for m, s in zip(mean[::-1], std[::-1])]
            fig.add_trace(go.Scatter(x=x + x[::-1], y=band, fill="toself", fillcolor=_faint(color),
                                     line={"width": 0}, hoverinfo="skip", showlegend=False, legendgroup=a), 1, col)
            fig.add_trace(go.Scatter(x=x, y=mean, name=a, line={"color": color}, legendgroup=a,
                                     showlegend=col == 1), 1, col)
    if result.target is not None:
        fig.add_hline(y=result.target, line_dash="dot", row=1, col=2,
                      annotation_text=f"random search's final mean {result.target:.2f}")
    fig.update_xaxes(title_text="evaluations (distinct networks)")
    fig.update_layout(title=f"NAS-Bench-201 {cfg.dataset}: {cfg.seeds} seeds, budget {cfg.budget}")
    return fig


def _mean_std(curves: list[list[float]]) -> tuple[list[float], list[float]]:
    cols = list(zip(*curves))
    return ([statistics.fmean(c) for c in cols],
            [statistics.stdev(c) if len(c) > 1 else 0.0 for c in cols])


def _faint(rgb: str) -> str:
    return rgb.replace("rgb(", "rgba(").replace(")", ", 0.2)")
