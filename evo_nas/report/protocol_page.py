"""How a study on real training looks: test accuracy against params and against MACs for every
arm's returned networks and the baselines, the per-arm table, each algorithm against random
search, and the proxy's validity at the study's scale.   [plotly]"""

from __future__ import annotations

import html
import math

import plotly.graph_objects as go
from plotly.colors import DEFAULT_PLOTLY_COLORS

from evo_nas.report.html import GENERATOR
from evo_nas.report.study_page import CSS


def scatter(summary, measure: str) -> go.Figure:
    """Test accuracy (%) against `measure` ("params" or "macs"), log x: one colour per arm (the
    best-by-proxy networks filled, other returned ones open), baselines as labelled diamonds."""
    fig = go.Figure()
    ok = [r for r in summary.rows if r.status == "ok"]
    for n, arm in enumerate(a.arm for a in summary.arms):
        for best in (True, False):
            rows = [r for r in ok if r.kind == "search" and r.arm == arm and (r.rank == 0) == best]
            fig.add_trace(go.Scatter(
                x=[getattr(r, measure) for r in rows], y=[100 * r.test_accuracy for r in rows], mode="markers",
                name=f"{arm}: {'best by proxy' if best else 'other returned'}", legendgroup=arm,
                marker={"color": DEFAULT_PLOTLY_COLORS[n % 10], "size": 10, "symbol": "circle" if best else
                        "circle-open", "line": {"width": 2}},
                text=[f"{arm} seed {r.seed}, #{r.search_id}: proxy {100 * r.proxy_accuracy:.2f}%<br>"
                      f"{html.escape(r.genome[:100])}" for r in rows], hoverinfo="text+x+y"))
    baselines = [r for r in ok if r.kind == "baseline"]
    fig.add_trace(go.Scatter(x=[getattr(r, measure) for r in baselines], y=[100 * r.test_accuracy for r in baselines],
                             mode="markers+text", name="baselines", text=[r.arm for r in baselines],
                             textposition=["top center" if k % 2 == 0 else "bottom center"
                                           for k in range(len(baselines))],
                             marker={"color": "#333", "size": 12, "symbol": "diamond"}, hoverinfo="text+x+y"))
    label = "parameters" if measure == "params" else "multiply-adds per image"
    fig.update_layout(title=f"Test accuracy after the final training, against {label}", height=480,
                      xaxis={"type": "log", "title": label}, yaxis={"title": "test accuracy (%)"},
                      legend={"orientation": "h", "y": -0.25}, margin={"l": 70, "r": 30, "t": 60, "b": 40},
                      paper_bgcolor="white", plot_bgcolor="white")
    return fig


def _pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def _table(ident: str, header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table id='{ident}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def arms_table(summary) -> str:
    rows = [[a.arm, str(a.seeds), f"{a.evaluations:.0f}", f"{a.search_minutes:.1f}",
             f"{_pct(a.test_mean)} ± {_pct(a.test_sd)}", f"[{_pct(a.test_low)}, {_pct(a.test_high)}]",
             f"{a.params_median:,.0f}" if a.params_median else "–",
             f"{a.hv_mean:.4f}" if a.hv_mean is not None else "–",
             f"[{a.hv_low:.4f}, {a.hv_high:.4f}]" if a.hv_low is not None and not math.isnan(a.hv_low) else "–"]
            for a in summary.arms]
    rows += [[f"baseline: {r.arm}", "", "", "", _pct(r.test_accuracy), "", f"{r.params:,}" if r.params else "–", "",
              ""] for r in summary.rows if r.kind == "baseline"]
    return _table("arms", ["arm", "seeds", "evaluations a search", "search minutes", "test accuracy (%), mean ± sd",
                           "95% interval of the mean", "params (median)", "hypervolume", "95% interval"], rows)


def comparisons_table(summary) -> str:
    def p(x):
        return "–" if x is None or math.isnan(x) else f"{x:.3f}"

    rows = [[f"{c.arm} − random", str(c.pairs), _pct(c.test_diff), f"[{_pct(c.test_low)}, {_pct(c.test_high)}]",
             p(c.test_p), f"{c.hv_diff:+.4f}" if c.hv_diff is not None else "–", p(c.hv_p)]
            for c in summary.comparisons]
    return _table("comparisons", ["paired by seed", "pairs", "test accuracy difference (points)", "95% interval",
                                  "Wilcoxon p", "hypervolume difference", "Wilcoxon p"], rows)


def render(summary, name: str) -> str:
    """The study as one self-contained page (plotly.js inline)."""
    s = summary
    tau = (f"Kendall tau between the searches' proxy accuracy and the final test accuracy of the same networks: "
           f"{s.proxy_vs_final.text()} (n={s.proxy_vs_final.n})." if s.proxy_vs_final else "")
    plots = [scatter(s, "params").to_html(include_plotlyjs=True, full_html=False),
             scatter(s, "macs").to_html(include_plotlyjs=False, full_html=False)]
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>{GENERATOR}<title>evonas study: "
            f"{html.escape(name)}</title><style>{CSS}</style></head><body>"
            f"<h1>Does the search find better networks? {html.escape(s.space)} on {html.escape(s.dataset)}</h1>"
            f"<p class='note'>Each arm searched once per seed with a budget of {s.budget} trained evaluations; what "
            f"each search returned and every baseline were trained again by one final protocol ({s.final_epochs} "
            f"epoch(s) on the whole training split) and tested once on the test split. Test accuracy per arm is "
            f"that of each search's best network by proxy accuracy; the hypervolume is of (test error, params) over "
            f"everything a search returned, up to (1, {s.hv_reference_params:,.0f} params). Intervals: bootstrap "
            f"over seeds. {html.escape(tau)} {s.seconds / 60:.0f} minutes of training in all. docs/study.md has the "
            f"protocol.</p>{arms_table(s)}<h2>Against random search</h2>{comparisons_table(s)}"
            + "".join(plots) + "</body></html>\n")
