"""The run report's figures, as plain plotly dicts computed from a `report.data.ReportData`
(plotly.js draws them; no graph_objects needed).   [stdlib; plotly.colors when drawn]

Axes say what people read: accuracy clamped to [0, 1], log axes ticked 1-2-5 per decade and
labelled 100K, 1M; generations in discrete colours; every point carries its id as customdata,
which the page's side panel uses to show the architecture drawing on hover.
"""

from __future__ import annotations

import html
import math
import re

from evo_nas.predictor import PredictorGeneration
from evo_nas.records import Record, front
from evo_nas.report.data import FRONT_TRACE, Gene, ReportData, from_file, si

RED, BLUE, GREEN, ORANGE, GREY = "#d62728", "#4c78a8", "#2ca02c", "#ff9f1c", "#888888"
EVALUATIONS = "evaluations"  # the legend group of the per-generation traces (the browser test counts it)
MOST_COLOURS = 10  # generations share a colour beyond this many


# -- text -----------------------------------------------------------------------------------------

def wrap(text: str, width: int = 70) -> list[str]:
    """Break a long genome description after commas or spaces (cells have no spaces)."""
    lines, line = [], ""
    for piece in re.split(r"(?<=[, ])", text):
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = ""
        line += piece
    return lines + [line] if line else lines


def hparams_text(e: Record) -> str:
    hp = e.genome.hparams
    if hp is None:
        return ""
    return f"lr {hp.lr:.3g} · weight decay {hp.weight_decay:.3g} · dropout {hp.dropout:.2f} · {hp.optimizer}"


def accuracy_text(e: Record) -> str:
    """0.8123, or 0.8123 ± 0.0100 (3 seeds) for an individual trained with several seeds."""
    if e.accuracy is None:
        return "-"
    if e.accuracy_sd is None:
        return f"{e.accuracy:.4f}"
    return f"{e.accuracy:.4f} ± {e.accuracy_sd:.4f}" + (f" ({e.repeats} seeds)" if e.repeats else "")


def hover(data: ReportData, e: Record) -> str:
    """Hover text (plotly's HTML subset): who, from whom, how good, what genome."""
    parents = ", ".join(f"#{p}" for p in e.parents) or "none"
    lines = [f"<b>#{e.id}</b>{' ' + html.escape(e.genome.name) if e.genome.name else ''}"
             f"  generation {e.generation}  {html.escape(e.operator)}", f"parents {parents}"]
    if e.ok:
        lines.append(f"accuracy {accuracy_text(e)}   MACs {si(e.macs)}   params {si(e.params)}")
    else:
        lines.append(f"<b>{e.status}</b>: {html.escape((e.error or '')[:120])}")
        lines.append(f"MACs {si(e.macs)}   params {si(e.params)}")
    if data.config.get("fidelity") == "sha":
        lines.append(f"rung {e.rung + 1} of {data.config.get('sha_rungs')}")
    if e.genome.hparams is not None:
        lines.append(hparams_text(e))
    lines += [html.escape(x) for x in wrap(e.genome.describe())]
    return "<br>".join(lines)


# -- axes -----------------------------------------------------------------------------------------

def _axis(title: str, **options) -> dict:
    return {"title": {"text": title}, **options}  # in report.shell's LOOK


def accuracy_range(values, with_zero: bool = False) -> list[float]:
    """An accuracy axis inside [0, 1] (2% margins): the values' span, padded; 0 included for
    the failures drawn there; the whole [0, 1] when there is nothing to show."""
    values = [v for v in values if v is not None] + ([0.0] if with_zero else [])
    if not values or max(values) <= 0:
        return [-0.02, 1.02]
    low, high = min(values), max(values)
    pad = max(0.02, 0.08 * (high - low))
    return [max(-0.02, low - pad), min(1.02, high + pad)]


def accuracy_axis(values, title: str = "validation accuracy", with_zero: bool = False) -> dict:
    return _axis(title, range=accuracy_range(values, with_zero), tickformat=".2f")


TICK_STEPS = ((1,), (1, 2, 5), (1, 2, 4, 6, 8), (1, 2, 3, 4, 5, 6, 7, 8, 9))  # multiples of 10^k, sparse first


def log_ticks(values, most: int = 4) -> dict:
    """A log axis over positive `values` with ticks people read: the sparsest of TICK_STEPS that
    gives `most` ticks (powers of ten when they span over three decades), round steps across a
    narrower range; labelled as si() writes them (100K, 1.2M), not plotly's bare "2 3 4"."""
    values = [v for v in values if v is not None and v > 0]
    if not values:
        return {"type": "log"}
    low, high = math.log10(min(values)), math.log10(max(values))
    pad = max(0.04, 0.05 * (high - low))
    low, high = low - pad, high + pad
    ticks: list[float] = []
    for steps in TICK_STEPS:
        ticks = [m * 10.0 ** k for k in range(math.floor(low), math.ceil(high) + 1) for m in steps
                 if low <= math.log10(m * 10.0 ** k) <= high]
        if len(ticks) >= most or (steps == (1,) and len(ticks) >= 3 and high - low > 3):
            break
    if len(ticks) < 3:  # a narrow range: round steps across it
        ticks = _round_steps(10 ** low, 10 ** high)
    return {"type": "log", "range": [low, high], "tickvals": ticks, "ticktext": [si(t) for t in ticks]}


def _round_steps(low: float, high: float) -> list[float]:
    """Multiples of the largest 1, 2 or 5 x 10^k step that puts at least three ticks in [low, high]."""
    k = math.floor(math.log10(high - low))
    for step in (10.0 ** k, 5 * 10.0 ** (k - 1), 2 * 10.0 ** (k - 1), 10.0 ** (k - 1)):
        ticks = [float(f"{n * step:.6g}") for n in range(math.ceil(low / step), math.floor(high / step) + 1)]
        if len(ticks) >= 3:
            return ticks
    return ticks


def _integer_ticks(n: int) -> dict:
    """A tick per generation while they fit; plotly's own choice (which may fall between) after."""
    return {"dtick": 1} if n <= 20 else {}


# -- generations in discrete colours ----------------------------------------------------------------

def generation_groups(last: int) -> list[tuple[int, int, str]]:
    """(first, last, colour) per group of generations: one each up to MOST_COLOURS, then equal runs."""
    from plotly.colors import sample_colorscale

    width = max(1, math.ceil((last + 1) / MOST_COLOURS))
    starts = list(range(0, last + 1, width))
    colours = sample_colorscale("Viridis", [0.5] if len(starts) == 1 else
                                [0.9 * i / (len(starts) - 1) for i in range(len(starts))])
    return [(g, min(g + width - 1, last), c) for g, c in zip(starts, colours)]


# -- figures --------------------------------------------------------------------------------------------

# The legend goes under the plot, below the axis title: three plots share a row, and a legend
# above them collides with their titles.
LEGEND_BELOW = {"orientation": "h", "x": 0, "y": -0.3, "yanchor": "top", "font": {"size": 12}}


COMPACT = {"l": 64, "r": 24, "t": 96, "b": 56}  # subplots with their legend above


def _figure(traces: list[dict], title: str, height: int = 540, **layout) -> dict:
    return {"data": traces, "layout": {  # in report.shell's LOOK
        "title": {"text": title, "x": 0.01}, "height": height, "margin": {"l": 64, "r": 24, "t": 56, "b": 150},
        "hoverlabel": {"align": "left", "font": {"family": "monospace", "size": 12}}, "legend": LEGEND_BELOW, **layout}}


def subplots(titles: list[str], gap: float = 0.07) -> dict:
    """Layout entries for len(titles) side-by-side subplots: axes x, x2, ... and their titles."""
    n = len(titles)
    width = (1 - gap * (n - 1)) / n
    layout: dict = {"annotations": [], "legend": {"orientation": "h", "x": 0, "y": 1.12, "yanchor": "bottom"}}
    for k, title in enumerate(titles):
        left, suffix = k * (width + gap), "" if k == 0 else str(k + 1)
        layout[f"xaxis{suffix}"] = {"domain": [left, left + width], "anchor": f"y{suffix}"}
        layout[f"yaxis{suffix}"] = {"anchor": f"x{suffix}"}
        layout["annotations"].append({"text": title, "x": left + width / 2, "y": 1.0, "xref": "paper",
                                      "yref": "paper", "xanchor": "center", "yanchor": "bottom",
                                      "showarrow": False, "font": {"size": 14}})
    return layout


def _points(name: str, members: list[Record], data: ReportData, x, y, **style) -> dict:
    """A scatter trace of evaluations with their hover text and ids; x and y are functions of one."""
    return {"type": "scatter", "name": name, "mode": "markers", "x": [x(e) for e in members],
            "y": [y(e) for e in members], "hovertext": [hover(data, e) for e in members], "hoverinfo": "text",
            "customdata": [e.id for e in members], **style}


def _by_generation(data: ReportData, ok: list[Record], trace) -> list[dict]:
    """One trace per generation group, in its colour, all in the legend group EVALUATIONS."""
    last = max((e.generation for e in data.evaluations), default=0)
    traces = []
    for first, end, colour in generation_groups(last):
        members = [e for e in ok if first <= e.generation <= end]
        if members:
            name = f"generation {first}" if first == end else f"generations {first}-{end}"
            traces.append(trace(name, members, colour))
    return traces


def _error_bars(members: list[Record]) -> dict:
    """Accuracy ± its standard deviation over seeds, where individuals were trained several times."""
    if all(e.accuracy_sd is None for e in members):
        return {}
    return {"error_y": {"type": "data", "array": [e.accuracy_sd or 0.0 for e in members], "visible": True,
                        "thickness": 1, "width": 2}}


def objective_figure(data: ReportData, x: str) -> dict:
    """Accuracy against MACs or params: every evaluation, failures, the front, genome files."""
    ok = [e for e in data.evaluations if e.ok]
    failed = [e for e in data.evaluations if not e.ok and getattr(e, x) is not None]

    def cost(e):
        return getattr(e, x)

    traces = _by_generation(data, ok, lambda name, members, colour: _points(
        name, members, data, cost, lambda e: e.accuracy, legendgroup=EVALUATIONS, **_error_bars(members),
        marker={"color": colour, "size": 8, "line": {"width": 0.5, "color": "white"}}))
    if failed:
        traces.append(_points("failed / infeasible (at 0)", failed, data, cost, lambda e: 0.0,
                              marker={"symbol": "x", "size": 8, "color": RED}))
    plane = sorted(front(ok, ("accuracy", x)), key=cost)
    traces.append({"type": "scatter", "name": f"front of accuracy and {x}", "mode": "lines", "hoverinfo": "skip",
                   "x": [cost(e) for e in plane], "y": [e.accuracy for e in plane],
                   "line": {"shape": "hv", "color": RED, "width": 1.5, "dash": "dot"}})
    traces.append(_points(FRONT_TRACE, [data.individuals[i] for i in data.front], data, cost, lambda e: e.accuracy,
                          marker={"symbol": "circle-open", "size": 15, "color": RED, "line": {"width": 2.5}}))
    files = [e for e in data.from_files if cost(e) is not None]
    if files:
        traces.append(_points("genomes from files", files, data, cost, lambda e: e.accuracy or 0.0,
                              mode="markers+text", text=[html.escape(e.genome.name or f"#{e.id}") for e in files],
                              textposition="top center", textfont={"size": 12, "color": "#7f3f00"},
                              marker={"symbol": "star", "size": 16, "color": ORANGE,
                                      "line": {"width": 1, "color": "black"}}))
    shown = [e.accuracy + (e.accuracy_sd or 0) for e in ok] + [e.accuracy - (e.accuracy_sd or 0) for e in ok]
    what = "MACs" if x == "macs" else "parameters"
    return _figure(traces, f"Validation accuracy vs {what}",
                   xaxis=_axis(f"{what}{' per image' * (x == 'macs')} (log scale)",
                               **log_ticks([cost(e) for e in ok + failed])),
                   yaxis=accuracy_axis(shown, with_zero=bool(failed)))


def objectives_3d(data: ReportData) -> dict:
    """Accuracy, MACs and params at once: every successful evaluation and the front."""
    ok = [e for e in data.evaluations if e.ok]

    def trace(name, members, colour, **marker):
        return {"type": "scatter3d", "mode": "markers", "name": name, "x": [e.macs for e in members],
                "y": [e.params for e in members], "z": [e.accuracy for e in members],
                "customdata": [e.id for e in members], "hovertext": [hover(data, e) for e in members],
                "hoverinfo": "text", "marker": {"color": colour, "size": 4, **marker}}

    traces = _by_generation(data, ok, lambda name, members, colour: {**trace(name, members, colour),
                                                                     "legendgroup": EVALUATIONS})
    traces.append(trace(FRONT_TRACE, [data.individuals[i] for i in data.front], RED, size=7, symbol="diamond",
                        line={"width": 1, "color": "black"}))

    def axis(title, **more):
        return {"title": {"text": title}, "backgroundcolor": "white", "gridcolor": "#ddd", **more}

    scene = {"xaxis": axis("MACs", **log_ticks([e.macs for e in ok], most=2)),
             "yaxis": axis("params", **log_ticks([e.params for e in ok], most=2)),
             "zaxis": axis("accuracy", range=accuracy_range([e.accuracy for e in ok]), tickformat=".2f"),
             "camera": {"eye": {"x": 1.6, "y": -1.6, "z": 0.9}}, "aspectmode": "cube"}
    return _figure(traces, "Accuracy, MACs and params", margin={"l": 0, "r": 0, "t": 56, "b": 110}, scene=scene,
                   legend={**LEGEND_BELOW, "y": 0})


def progress_figure(data: ReportData) -> dict:
    """Hypervolume and best accuracy per generation, side by side."""
    stats = data.generations
    gens = [s.generation for s in stats]
    layout = subplots([f"hypervolume of {', '.join(data.objectives)} (normalised)", "best validation accuracy"],
                       gap=0.1)
    for axis in ("xaxis", "xaxis2"):
        layout[axis].update(title={"text": "generation"}, **_integer_ticks(len(gens)))
    layout["yaxis"]["title"] = {"text": "hypervolume"}
    layout["yaxis2"].update(title={"text": "validation accuracy"}, tickformat=".2f", range=accuracy_range(
        [s.best_accuracy for s in stats] + [s.generation_best for s in stats]))
    traces = [
        {"type": "scatter", "name": "hypervolume", "mode": "lines+markers", "x": gens,
         "y": [s.hypervolume for s in stats], "line": {"color": BLUE}},
        {"type": "scatter", "name": "best so far", "mode": "lines+markers", "x": gens, "xaxis": "x2", "yaxis": "y2",
         "y": [s.best_accuracy for s in stats], "line": {"color": GREEN}},
        {"type": "scatter", "name": "best of the generation", "mode": "markers", "x": gens, "xaxis": "x2",
         "yaxis": "y2", "y": [s.generation_best for s in stats],
         "marker": {"symbol": "diamond-open", "size": 9, "color": "#555"}}]
    return _figure(traces, "", height=420, margin=COMPACT, **layout)  # the section heading says what it is


def predictor_figure(generations: tuple[PredictorGeneration, ...]) -> dict:
    """The predictor's Kendall tau per generation it screened (0: no better than chance), with the
    seconds screening cost per child bred against those a training cost, on hover."""
    gens = [g.generation for g in generations]
    text = [f"generation {g.generation}: tau {g.tau:+.2f} over {g.children} children<br>screening "
            f"{_seconds(g.screen_s)} per child bred, training {_seconds(g.train_s)} per child trained"
            for g in generations]
    traces = [{"type": "scatter", "name": "Kendall tau", "mode": "lines+markers", "x": gens,
               "y": [None if math.isnan(g.tau) else g.tau for g in generations], "hovertext": text,
               "hoverinfo": "text", "line": {"color": BLUE}}]
    return _figure(traces, "Predicted against measured accuracy: Kendall tau per generation", height=360,
                   margin=COMPACT, showlegend=False, xaxis=_axis("generation", **_integer_ticks(max(gens, default=1))),
                   yaxis=_axis("Kendall tau", range=[-1.05, 1.05], zeroline=True, zerolinecolor=GREY))


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g} s"


def lineage_figure(data: ReportData) -> dict:
    """The front members' ancestors by generation and accuracy, an arrow from each parent to
    its child (blue: crossover, grey: mutation)."""
    nodes = {i: data.individuals[i] for i in sorted({i for chain in data.lineage.values() for i in chain})}
    arrows = []
    for e in nodes.values():
        for p in e.parents:
            if p in nodes:
                arrows.append({"x": e.generation, "y": e.accuracy or 0.0, "ax": nodes[p].generation,
                               "ay": nodes[p].accuracy or 0.0, "xref": "x", "yref": "y", "axref": "x",
                               "ayref": "y", "text": "", "showarrow": True, "arrowhead": 2, "arrowsize": 1.1,
                               "arrowwidth": 1.2, "standoff": 7, "startstandoff": 5,
                               "arrowcolor": BLUE if len(e.parents) > 1 else GREY})
    front_ids = set(data.front)
    traces = []
    for name, color, size, members in (
            ("ancestors", BLUE, 9, [e for e in nodes.values() if e.id not in front_ids]),
            ("front members", RED, 12, [e for e in nodes.values() if e.id in front_ids])):
        traces.append(_points(name, members, data, lambda e: e.generation, lambda e: e.accuracy or 0.0, marker={
            "color": color, "size": size, "line": {"width": 1, "color": "white"},
            "symbol": ["star" if from_file(e) else "circle" for e in members]}))
    return _figure(traces, "Ancestry of the front: arrows from parent to child (blue: crossover, grey: mutation; "
                           "stars: genomes from files)",
                   xaxis=_axis("generation", **_integer_ticks(len(data.generations))),
                   yaxis=accuracy_axis([e.accuracy for e in nodes.values()],
                                       with_zero=any(e.accuracy is None for e in nodes.values())),
                   annotations=arrows, margin={"l": 64, "r": 24, "t": 56, "b": 110},
                   legend={**LEGEND_BELOW, "y": -0.2})


def hparam_figure(data: ReportData) -> dict:
    """Each hyperparameter gene against accuracy; dashed lines: the gene's range."""
    ok = [e for e in data.evaluations if e.ok and e.genome.hparams is not None]
    best = set(data.best)
    layout = subplots([("⚠ " if g.warning else "") + g.label for g in data.genes], gap=0.05)
    layout["shapes"], traces = [], []
    for k, gene in enumerate(data.genes):
        suffix = "" if k == 0 else str(k + 1)
        for name, color, members in (("others", "#9ab", [e for e in ok if e.id not in best]),
                                     ("best candidates", RED, [e for e in ok if e.id in best])):
            traces.append(_points(name, members, data, lambda e, g=gene.name: getattr(e.genome.hparams, g),
                                  lambda e: e.accuracy, legendgroup=name, showlegend=k == 0,
                                  xaxis=f"x{suffix}", yaxis=f"y{suffix}", marker={"color": color, "size": 8}))
        layout[f"xaxis{suffix}"].update(_gene_axis(gene))
        layout[f"yaxis{suffix}"].update(range=accuracy_range([e.accuracy for e in ok]), tickformat=".2f")
        layout["shapes"] += _gene_edges(gene, suffix)
    layout["yaxis"]["title"] = {"text": "validation accuracy"}
    return _figure(traces, "", height=420, margin=COMPACT, **layout)


def _gene_axis(gene: Gene) -> dict:
    if gene.bounds is None:
        return {"type": "category", "title": {"text": gene.label}}
    low, high = _gene_scale(gene)
    pad = 0.05 * (high - low)
    decades = {"dtick": 1, "exponentformat": "power"} if gene.log else {}  # not plotly's bare "2 5" in between
    return {"type": "log" if gene.log else "linear", "range": [low - pad, high + pad],
            "title": {"text": gene.label + (" (log scale)" if gene.log else "")}, **decades}


def _gene_scale(gene: Gene) -> tuple[float, float]:
    """The range in axis-range units: plotly takes a log axis's range in log10 (its shapes,
    though, in data values)."""
    scale = math.log10 if gene.log else float
    return scale(gene.bounds[0]), scale(gene.bounds[1])


def _gene_edges(gene: Gene, suffix: str) -> list[dict]:
    if gene.bounds is None:
        return []
    line = {"dash": "dash", "width": 1, "color": RED if gene.warning else "#888"}
    return [{"type": "line", "x0": edge, "x1": edge, "y0": 0, "y1": 1, "xref": f"x{suffix}",
             "yref": f"y{suffix} domain", "line": line} for edge in gene.bounds]
