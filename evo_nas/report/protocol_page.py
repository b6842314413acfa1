"""How a study on real training looks: test accuracy against params and against MACs for every
arm's returned networks and the baselines, the per-arm table, each algorithm against random
search, and the proxy's validity at the study's scale.   [plotly when drawn]"""

from __future__ import annotations

import html
import math

from evo_nas.report import shell

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def scatter(summary, measure: str) -> dict:
    """Test accuracy (%) against `measure` ("params" or "macs"), log x: one colour per arm (the
    best-by-proxy networks filled, the other returned ones open), baselines as labelled diamonds."""
    ok = [r for r in summary.rows if r.status == "ok"]
    traces = []
    for n, arm in enumerate(a.arm for a in summary.arms):
        for best in (True, False):
            rows = [r for r in ok if r.kind == "search" and r.arm == arm and (r.rank == 0) == best]
            traces.append({"type": "scatter", "mode": "markers", "legendgroup": arm,
                           "name": f"{arm}: {'best by proxy' if best else 'other returned'}",
                           "x": [getattr(r, measure) for r in rows], "y": [100 * r.test_accuracy for r in rows],
                           "marker": {"color": COLOURS[n % len(COLOURS)], "size": 10, "line": {"width": 2},
                                      "symbol": "circle" if best else "circle-open"},
                           "text": [f"{arm} seed {r.seed}, #{r.search_id}: proxy {100 * r.proxy_accuracy:.2f}%<br>"
                                    f"{html.escape(r.genome[:100])}" for r in rows], "hoverinfo": "text+x+y"})
    baselines = [r for r in ok if r.kind == "baseline"]
    traces.append({"type": "scatter", "mode": "markers+text", "name": "baselines", "text": [r.arm for r in baselines],
                   "x": [getattr(r, measure) for r in baselines], "y": [100 * r.test_accuracy for r in baselines],
                   "textposition": ["top center" if k % 2 == 0 else "bottom center" for k in range(len(baselines))],
                   "marker": {"color": "#333", "size": 12, "symbol": "diamond"}, "hoverinfo": "text+x+y"})
    label = "parameters" if measure == "params" else "multiply-adds per image"
    return {"data": traces, "layout": {"title": {"text": f"Final test accuracy against {label}"},
                                       "height": 480, "xaxis": {"type": "log", "title": {"text": label}},
                                       "yaxis": {"title": {"text": "test accuracy (%)"}},
                                       "legend": {"orientation": "h", "y": -0.25}}}


def _pct(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def _p(x) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.3f}"


def arms_table(summary) -> str:
    rows = [[html.escape(a.arm), str(a.seeds), f"{a.evaluations:.0f}", f"{a.search_minutes:.1f}",
             f"{_pct(a.test_mean)} ± {_pct(a.test_sd)}", f"[{_pct(a.test_low)}, {_pct(a.test_high)}]",
             f"{a.params_median:,.0f}" if a.params_median else "–",
             f"{a.hv_mean:.4f}" if a.hv_mean is not None else "–",
             f"[{a.hv_low:.4f}, {a.hv_high:.4f}]" if a.hv_low is not None and not math.isnan(a.hv_low) else "–"]
            for a in summary.arms]
    rows += [[f"baseline: {html.escape(r.arm)}", "", "", "", _pct(r.test_accuracy), "",
              f"{r.params:,}" if r.params else "–", "", ""] for r in summary.rows if r.kind == "baseline"]
    return shell.table(["arm", "seeds", "evaluations a search", "search minutes", "test accuracy (%), mean ± sd",
                        "95% interval of the mean", "params (median)", "hypervolume", "95% interval"], rows,
                       numeric=set(range(1, 9)), attrs=" id='arms'")


def comparisons_table(summary) -> str:
    rows = [[f"{html.escape(c.arm)} − random", str(c.pairs), _pct(c.test_diff),
             f"[{_pct(c.test_low)}, {_pct(c.test_high)}]", _p(c.test_p),
             f"{c.hv_diff:+.4f}" if c.hv_diff is not None else "–", _p(c.hv_p)] for c in summary.comparisons]
    return shell.table(["paired by seed", "pairs", "test accuracy difference (points)", "95% interval",
                        "Wilcoxon p", "hypervolume difference", "Wilcoxon p"], rows, numeric=set(range(1, 7)),
                       attrs=" id='comparisons'")


def render_page(summary, name: str, plotly_js: str = "inline", tail: str = "") -> str:
    """The study as one page (plotly.js inline: self-contained; shared: `evonas watch`'s)."""
    s = summary
    tau = (f"Kendall tau between the searches' proxy accuracy and the final test accuracy of the same networks: "
           f"{s.proxy_vs_final.text()} (n={s.proxy_vs_final.n})." if s.proxy_vs_final else "")
    intro = shell.guide(
        f"Each arm searched once per seed with a budget of {s.budget} trained evaluations; what each search returned "
        f"and every baseline were trained again by one final protocol ({s.final_epochs} epoch(s) on the whole "
        f"training split) and tested once on the test split. An arm's test accuracy is that of each search's best "
        f"network by proxy accuracy; its hypervolume is of (test error, params) over everything a search returned, "
        f"up to (1, {s.hv_reference_params:,.0f} params). Intervals: bootstrap over seeds. {html.escape(tau)} "
        f"{s.seconds / 60:.0f} minutes of training in all; docs/study.md has the protocol.")
    sections = [("Arms and baselines", [arms_table(s)]), ("Against random search", [comparisons_table(s)]),
                ("Accuracy against size", ["<div class='plots two'>", shell.plot(scatter(s, "params")),
                                           shell.plot(scatter(s, "macs")), "</div>"])]
    return shell.render(f"evonas study: {name}", f"Does the search find better networks? {s.space} on {s.dataset}",
                        sections, intro, plotly_js=plotly_js, tail=tail)
