"""How the study looks: a results table per algorithm, best-so-far curves with labelled bands of
one standard deviation, and each search's hypervolume against the whole space's, drawn from a
study's result and its per-algorithm table (computed by evo_nas.study) through report.shell.   [stdlib]"""

from __future__ import annotations

import html
import statistics

from evo_nas.report.figures import subplots
from evo_nas.report.shell import guide, plot, render, table

COLOURS = ("31, 119, 180", "255, 127, 14", "44, 160, 44", "214, 39, 40", "148, 103, 189", "140, 86, 75")


def figure(result) -> dict:
    """Mean best-so-far against evaluations, one colour per algorithm, band = ±1 sd."""
    cfg = result.config
    layout = subplots(["best 12-epoch validation accuracy so far (%)", "200-epoch test accuracy of that network (%)"])
    x, traces = list(range(1, cfg.budget + 1)), []
    for n, a in enumerate(cfg.algorithms):
        for col, kind in enumerate(("val", "test")):
            style = {"xaxis": f"x{col + 1}", "yaxis": f"y{col + 1}", "legendgroup": a, "showlegend": not col}
            mean, sd = _mean_std(result.curves[a][kind])
            band = [m + s for m, s in zip(mean, sd)] + [m - s for m, s in zip(mean[::-1], sd[::-1])]
            traces += [{"type": "scatter", "x": x + x[::-1], "y": band, "fill": "toself", "hoverinfo": "skip",
                        "fillcolor": _colour(n, 0.2), "line": {"width": 0}, **style,
                        "name": f"{a}: ±1 sd over {len(result.curves[a][kind])} seeds"},
                       {"type": "scatter", "x": x, "y": mean, "name": f"{a}: mean", "line": {"color": _colour(n)},
                        **style}]
    for axis in ("xaxis", "xaxis2"):
        layout[axis]["title"] = {"text": "evaluations (distinct networks)"}
    if result.target is not None:
        line = _level(result.target, f"random search's final mean {result.target:.2f}", "x2 domain", "y2", "dot")
        layout.update(shapes=line["shapes"], annotations=layout["annotations"] + line["annotations"])
    return {"data": traces, "layout": {**layout, "height": 520, "legend": {"orientation": "h", "y": -0.2},
                                       "title": {"text": f"NAS-Bench-201 {cfg.dataset}: {cfg.seeds} seeds, budget "
                                                         f"{cfg.budget}"}, "margin": {"t": 90}}}


def hypervolume_figure(result) -> dict:
    """Each search's hypervolume of (validation error, params), per algorithm, and the space's."""
    traces = [{"type": "box", "y": [r["hypervolume"] for r in result.rows if r["algorithm"] == a], "name": a,
               "boxpoints": "all", "jitter": 0.4, "pointpos": 0, "marker": {"color": _colour(n), "size": 4},
               "line": {"color": _colour(n)}, "hoverinfo": "y+name"} for n, a in enumerate(result.config.algorithms)]
    return {"data": traces, "layout": {
        "title": {"text": "Hypervolume of (validation error, params) of everything each search evaluated"},
        "yaxis": {"title": {"text": "hypervolume (fraction of the reference box)"}}, "height": 440,
        "showlegend": False, **_level(result.space_hv, f"all 15,625 cells: {result.space_hv:.4f}", "paper", "y")}}


def _level(y: float, text: str, xref: str, yref: str, dash: str = "dash") -> dict:
    """A labelled horizontal line at y across the plot (xref "paper" or an axis's domain): layout entries."""
    return {"shapes": [{"type": "line", "x0": 0, "x1": 1, "xref": xref, "y0": y, "y1": y, "yref": yref,
                        "line": {"dash": dash, "color": "#555", "width": 1}}],
            "annotations": [{"text": text, "x": 0, "xref": xref, "y": y, "yref": yref, "xanchor": "left",
                             "yanchor": "bottom", "showarrow": False}]}


def results_table(result, rows: list[dict]) -> str:
    """The per-algorithm table (evo_nas.study.algorithm_table's rows) as HTML."""
    target = "random search's final mean" + (f" ({result.target:.2f})" if result.target is not None else "")
    header = ["algorithm", "seeds", "test accuracy (%), mean ± sd", "min – max", f"evaluations to reach {target}",
              "seeds reaching it alone", "hypervolume, mean ± sd", "gap to the space"]
    cells = []
    for t in rows:
        k = t["evals_to_match"]
        reach = ("n/a (random not run)" if result.target is None else
                 str(k) if k is not None else f"not within {result.config.budget}")
        cells.append([t["algorithm"], str(t["seeds"]), f"{t['test_mean']:.2f} ± {t['test_sd']:.2f}",
                      f"{t['test_min']:.2f} – {t['test_max']:.2f}", reach, f"{t['seeds_matching']}/{t['seeds']}",
                      f"{t['hv_mean']:.4f} ± {t['hv_sd']:.4f}", f"{t['hv_gap']:.4f}"])
    return table([html.escape(h) for h in header], [[html.escape(c) for c in row] for row in cells],
                 numeric=set(range(1, len(header))), attrs=" id='results'")


def render_page(result, rows: list[dict]) -> str:
    """The study as one self-contained page (plotly.js inline); `rows`: study.algorithm_table's."""
    cfg = result.config
    note = guide(f"{cfg.seeds} seeds (from {cfg.first_seed}), a budget of {cfg.budget} distinct networks per search. "
                 "Fitness: the table's 12-epoch validation accuracy; reported: the 200-epoch test accuracy of the best "
                 "network by that fitness (the benchmark's protocol). The best test accuracy in the space is "
                 f"{result.optimum_test:.2f}%; the study took {result.seconds:.1f} s. docs/study.md has the details.")
    title = f"NAS-Bench-201 {cfg.dataset}"
    return render(f"evonas study: {title}", f"{title}: {', '.join(cfg.algorithms)}", (
        ("Results", (results_table(result, rows),)),
        ("Best so far", (plot(figure(result)), guide("Lines: the mean over seeds; bands: ± one standard deviation."))),
        ("Hypervolume", (plot(hypervolume_figure(result)),))), intro=note)


def _colour(n: int, alpha: float = 1.0) -> str:
    return f"rgba({COLOURS[n % len(COLOURS)]}, {alpha})"


def _mean_std(curves: list[list[float]]) -> tuple[list[float], list[float]]:
    cols = list(zip(*curves))
    return ([statistics.fmean(c) for c in cols],
            [statistics.stdev(c) if len(c) > 1 else 0.0 for c in cols])
