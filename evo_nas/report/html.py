"""How the run report looks: one self-contained HTML page of plain plotly figures, tables, genome
files and lineage, laid out from a `report.data.ReportData`.   [plotly]
"""

from __future__ import annotations

import html
import math
import re
import time
from dataclasses import replace

import plotly.io as pio

from evo_nas.genome_io import dumps
from evo_nas.records import Record, Status, front
from evo_nas.report.data import BEST_MIN, BEST_SHARE, FRONT_TRACE, Gene, ReportData, from_file, si

# -- rendering: text helpers -----------------------------------------------------------------

def _wrap(text: str, width: int = 70) -> list[str]:
    """Break a long genome description after commas or spaces (cells have no spaces)."""
    lines, line = [], ""
    for piece in re.split(r"(?<=[, ])", text):
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = ""
        line += piece
    return lines + [line] if line else lines


def _hparams_text(e: Record) -> str:
    hp = e.genome.hparams
    if hp is None:
        return ""
    return f"lr {hp.lr:.3g} · weight decay {hp.weight_decay:.3g} · dropout {hp.dropout:.2f} · {hp.optimizer}"


def _hover(data: ReportData, e: Record) -> str:
    """Hover text (plotly's HTML subset): who, from whom, how good, what genome."""
    parents = ", ".join(f"#{p}" for p in e.parents) or "none"
    lines = [f"<b>#{e.id}</b>{' ' + html.escape(e.genome.name) if e.genome.name else ''}"
             f"  generation {e.generation}  {html.escape(e.operator)}", f"parents {parents}"]
    if e.ok:
        lines.append(f"accuracy {e.accuracy:.4f}   MACs {si(e.macs)}   params {si(e.params)}")
    else:
        lines.append(f"<b>{e.status}</b>: {html.escape((e.error or '')[:120])}")
        lines.append(f"MACs {si(e.macs)}   params {si(e.params)}")
    if data.config.get("fidelity") == "sha":
        lines.append(f"rung {e.rung + 1} of {data.config.get('sha_rungs')}")
    if e.genome.hparams is not None:
        lines.append(_hparams_text(e))
    lines += [html.escape(x) for x in _wrap(e.genome.describe())]
    return "<br>".join(lines)


def _axis_title(name: str) -> str:
    return {"accuracy": "validation accuracy", "macs": "MACs per image (log scale)",
            "params": "parameters (log scale)"}[name]


def genome_file(data: ReportData, e: Record) -> str:
    """The genome-file text of an evaluation, saying where it came from when nothing else does."""
    genome = e.genome
    if not genome.source:
        genome = replace(genome, source=f"evonas run {data.name}, evaluation {e.id}")
    return dumps(genome)


def lineage_text(data: ReportData, member: int) -> str:
    """A parent chain as one line: `#23 mut_op(#15) · #15 cx_uniform(#4, #7) · #4 init`."""
    steps = []
    for i in data.lineage[member]:
        e = data.individuals[i]
        made = f"{e.operator}({', '.join(f'#{p}' for p in e.parents)})" if e.parents else e.operator
        steps.append(f"#{i} {made}" + (f" [cache of #{e.cache_of}]" if e.cache_of is not None else ""))
    return " · ".join(steps)


# -- rendering: figures as plain plotly dicts (plotly.js draws them; no graph_objects needed) --

RED, BLUE, GREEN, ORANGE = "#d62728", "#4c78a8", "#2ca02c", "#ff9f1c"
AXIS = {"gridcolor": "#e8e8e8", "linecolor": "#999", "showline": True, "zeroline": False, "ticks": "outside"}


def _axis(title: str, **options) -> dict:
    return {**AXIS, "title": {"text": title}, **options}


def _figure(traces: list[dict], title: str, height: int = 520, **layout) -> dict:
    return {"data": traces, "layout": {
        "title": {"text": title, "x": 0.01}, "height": height, "paper_bgcolor": "white", "plot_bgcolor": "white",
        "font": {"family": "system-ui, sans-serif", "size": 13}, "margin": {"l": 64, "r": 24, "t": 96, "b": 56},
        "hovermode": "closest", "hoverlabel": {"align": "left", "font": {"family": "monospace", "size": 12}},
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"}, **layout}}


def _integer_ticks(n: int) -> dict:
    """A tick per generation while they fit; plotly's own choice (which may fall between) after."""
    return {"dtick": 1} if n <= 20 else {}


def _subplots(titles: list[str], gap: float = 0.07) -> dict:
    """Layout entries for len(titles) side-by-side subplots: axes x, x2, ... and their titles."""
    n = len(titles)
    width = (1 - gap * (n - 1)) / n
    layout: dict = {"annotations": [], "legend": {"orientation": "h", "x": 0, "y": 1.12, "yanchor": "bottom"}}
    for k, title in enumerate(titles):
        left, suffix = k * (width + gap), "" if k == 0 else str(k + 1)
        layout[f"xaxis{suffix}"] = {**AXIS, "domain": [left, left + width], "anchor": f"y{suffix}"}
        layout[f"yaxis{suffix}"] = {**AXIS, "anchor": f"x{suffix}"}
        layout["annotations"].append({"text": title, "x": left + width / 2, "y": 1.0, "xref": "paper",
                                      "yref": "paper", "xanchor": "center", "yanchor": "bottom",
                                      "showarrow": False, "font": {"size": 14}})
    return layout


def _points(name: str, members: list[Record], data: ReportData, x, y, **style) -> dict:
    """A scatter trace of evaluations with their hover text; x and y are functions of one."""
    return {"type": "scatter", "name": name, "mode": "markers", "x": [x(e) for e in members],
            "y": [y(e) for e in members], "hovertext": [_hover(data, e) for e in members], "hoverinfo": "text",
            **style}


def objective_figure(data: ReportData, x: str) -> dict:
    """Accuracy against MACs or params: every evaluation, failures, the front, genome files."""
    ok = [e for e in data.evaluations if e.ok]
    failed = [e for e in data.evaluations if not e.ok and getattr(e, x) is not None]
    last = max((e.generation for e in data.evaluations), default=0)

    def cost(e):
        return getattr(e, x)

    colorbar = {"title": {"text": "generation"}, "thickness": 12, **_integer_ticks(last)}
    traces = [_points("evaluations", ok, data, cost, lambda e: e.accuracy, marker={
        "color": [e.generation for e in ok], "colorscale": "Viridis", "cmin": 0, "cmax": max(last, 1), "size": 8,
        "line": {"width": 0.5, "color": "white"}, "colorbar": colorbar})]
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
    top = max((e.accuracy for e in ok), default=1.0)
    yrange = {"range": [-0.05 * top, 1.05 * top]} if failed else {}  # room for the crosses at 0
    what = "MACs" if x == "macs" else "parameters"
    return _figure(traces, f"Validation accuracy vs {what}", xaxis=_axis(_axis_title(x), type="log"),
                   yaxis=_axis("validation accuracy", **yrange))


def progress_figure(data: ReportData) -> dict:
    """Hypervolume and best accuracy per generation, side by side."""
    stats = data.generations
    gens = [s.generation for s in stats]
    layout = _subplots([f"hypervolume of {', '.join(data.objectives)} (normalised)", "best validation accuracy"],
                       gap=0.1)
    for axis in ("xaxis", "xaxis2"):
        layout[axis].update(title={"text": "generation"}, **_integer_ticks(len(gens)))
    layout["yaxis"]["title"] = {"text": "hypervolume"}
    layout["yaxis2"]["title"] = {"text": "validation accuracy"}
    traces = [
        {"type": "scatter", "name": "hypervolume", "mode": "lines+markers", "x": gens,
         "y": [s.hypervolume for s in stats], "line": {"color": BLUE}},
        {"type": "scatter", "name": "best so far", "mode": "lines+markers", "x": gens, "xaxis": "x2", "yaxis": "y2",
         "y": [s.best_accuracy for s in stats], "line": {"color": GREEN}},
        {"type": "scatter", "name": "best of the generation", "mode": "markers", "x": gens, "xaxis": "x2",
         "yaxis": "y2", "y": [s.generation_best for s in stats],
         "marker": {"symbol": "diamond-open", "size": 9, "color": "#555"}}]
    return _figure(traces, "", height=420, **layout)  # the section heading says what it is


def lineage_figure(data: ReportData) -> dict:
    """The front members' ancestors by generation and accuracy, edges from parent to child."""
    nodes = {i: data.individuals[i] for i in sorted({i for chain in data.lineage.values() for i in chain})}
    ex, ey = [], []
    for e in nodes.values():
        for p in e.parents:
            if p in nodes:  # a None between segments lifts the pen
                ex += [nodes[p].generation, e.generation, None]
                ey += [nodes[p].accuracy or 0.0, e.accuracy or 0.0, None]
    traces = [{"type": "scatter", "name": "parent to child", "mode": "lines", "x": ex, "y": ey, "hoverinfo": "skip",
               "line": {"color": "rgba(120,120,120,0.55)", "width": 1}}]
    front = set(data.front)
    for name, color, size, members in (
            ("ancestors", BLUE, 9, [e for e in nodes.values() if e.id not in front]),
            ("front members", RED, 12, [e for e in nodes.values() if e.id in front])):
        traces.append(_points(name, members, data, lambda e: e.generation, lambda e: e.accuracy or 0.0, marker={
            "color": color, "size": size, "line": {"width": 1, "color": "white"},
            "symbol": ["star" if from_file(e) else "circle" for e in members]}))
    return _figure(traces, "Ancestry of the front (stars: genomes from files)",
                   xaxis=_axis("generation", **_integer_ticks(len(data.generations))),
                   yaxis=_axis("validation accuracy"))


def hparam_figure(data: ReportData) -> dict:
    """Each hyperparameter gene against accuracy; dashed lines: the gene's range."""
    ok = [e for e in data.evaluations if e.ok and e.genome.hparams is not None]
    best = set(data.best)
    layout = _subplots([("⚠ " if g.warning else "") + g.label for g in data.genes], gap=0.05)
    layout["yaxis"]["title"] = {"text": "validation accuracy"}
    layout["shapes"], traces = [], []
    for k, gene in enumerate(data.genes):
        suffix = "" if k == 0 else str(k + 1)
        for name, color, members in (("others", "#9ab", [e for e in ok if e.id not in best]),
                                     ("best candidates", RED, [e for e in ok if e.id in best])):
            traces.append(_points(name, members, data, lambda e, g=gene.name: getattr(e.genome.hparams, g),
                                  lambda e: e.accuracy, legendgroup=name, showlegend=k == 0,
                                  xaxis=f"x{suffix}", yaxis=f"y{suffix}", marker={"color": color, "size": 8}))
        layout[f"xaxis{suffix}"].update(_gene_axis(gene))
        layout["shapes"] += _gene_edges(gene, suffix)
    return _figure(traces, "", height=420, **layout)


def _gene_axis(gene: Gene) -> dict:
    if gene.bounds is None:
        return {"type": "category", "title": {"text": gene.label}}
    low, high = _gene_scale(gene)
    pad = 0.05 * (high - low)
    return {"type": "log" if gene.log else "linear", "range": [low - pad, high + pad],
            "title": {"text": gene.label + (" (log scale)" if gene.log else "")}}


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


# -- rendering: the page ----------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1500px;
       padding: 16px 24px; color: #222; }
h1 { margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.facts { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 2px 14px;
         margin: 8px 0; font-size: 14px; }
.facts dt { color: #777; } .facts dd { margin: 0; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f6f6; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono { font-family: monospace; font-size: 12px; max-width: 640px; word-break: break-all; }
pre { background: #f7f7f7; border: 1px solid #e4e4e4; padding: 8px; font-size: 12px; overflow-x: auto; }
details { margin: 4px 0; } summary { cursor: pointer; }
.warning { background: #fff4e5; border-left: 4px solid #f0a020; padding: 8px 12px; margin: 8px 0; }
.note { color: #666; font-size: 13px; }
button.copy { font-size: 12px; margin-left: 8px; }
"""

COPY_JS = """
document.addEventListener('click', function (event) {
  var button = event.target.closest('button.copy');
  if (!button) return;
  event.preventDefault();  // the button sits in a <summary>: copying should not fold it
  var text = document.getElementById(button.getAttribute('data-target')).textContent;
  var done = function () { button.textContent = 'copied'; };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, function () {});
  } else {
    var area = document.createElement('textarea');
    area.value = text; document.body.appendChild(area); area.select();
    try { document.execCommand('copy'); done(); } catch (e) {}
    document.body.removeChild(area);
  }
});
"""


def render_html(data: ReportData) -> str:
    """The whole report as one self-contained HTML page."""
    figures = []

    def plot(fig: dict, div_id: str) -> str:
        figures.append(div_id)  # plotly.js goes in with the first figure only
        return pio.to_html(fig, include_plotlyjs=len(figures) == 1, full_html=False, div_id=div_id,
                           config={"displaylogo": False, "responsive": True}, validate=False,
                           default_height=f"{fig['layout']['height']}px")

    sections = [
        _header(data),
        "<h2>1. Accuracy against cost</h2>",
        plot(objective_figure(data, "macs"), "plot-macs"), plot(objective_figure(data, "params"), "plot-params"),
        _points_note(data),
        "<h2>2. Progress</h2>", plot(progress_figure(data), "plot-progress"), _hypervolume_note(data),
        "<h2>3. The front</h2>", _front_table(data), _genome_files(data),
        "<h2>4. Ancestry of the front</h2>",
        plot(lineage_figure(data), "plot-lineage") if data.front else "<p>No front yet.</p>", _lineage_table(data),
        "<h2>5. Genomes from files</h2>", _files_table(data),
    ]
    if data.genes:
        sections += ["<h2>6. Hyperparameter genes</h2>", _gene_warnings(data),
                     plot(hparam_figure(data), "plot-hparams")]
    sections += [_failures(data)]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>evonas report: {html.escape(data.name)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(sections) + f"\n<script>{COPY_JS}</script>\n</body></html>\n")


def _header(data: ReportData) -> str:
    c, evals = data.config, data.evaluations
    ok = [e for e in evals if e.ok]
    failed, infeasible = (sum(1 for e in evals if e.status is s) for s in (Status.FAILED, Status.INFEASIBLE))
    best = max((e.accuracy for e in ok), default=None)
    reference = ", ".join(f"error {r:g}" if o == "accuracy" else f"{o} {si(r)}"
                          for o, r in zip(data.objectives, data.reference))
    facts = {
        "search": f"{c.get('algorithm')} on {c.get('space')} / {c.get('dataset')} ({c.get('device')})",
        "objectives": ", ".join(data.objectives),
        "evaluations": f"{len(evals)}: {len(ok)} ok, {failed} failed, {infeasible} infeasible",
        "cache hits": f"{data.cache_hits} (networks met again; not counted as evaluations)",
        "generations": f"{len(data.generations)} (0 to {len(data.generations) - 1})" if data.generations else "0",
        "front": f"{len(data.front)} genome{'s' * (len(data.front) != 1)}",
        "best accuracy": f"{best:.4f}" if best is not None else "-",
        "hypervolume": f"{data.generations[-1].hypervolume:.4f}" if data.generations else "-",
        "reference point": reference,
        "started": str(data.meta.get("created", "?")), "report written": time.strftime("%Y-%m-%d %H:%M:%S"),
        "run directory": data.path}
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts.items())
    return f"<h1>evonas run {html.escape(data.name)}</h1><dl class='facts'>{items}</dl>"


def _points_note(data: ReportData) -> str:
    return ("<p class='note'>One point per evaluation, coloured by generation; failed and infeasible ones are "
            "crosses at accuracy 0 (those that failed before their network could be counted are listed at the "
            "end). Circles: the run's Pareto front over every evaluation, for its objectives "
            f"({', '.join(data.objectives)}); the dotted staircase: the front of accuracy and the plot's axis. "
            "Stars: genomes from files. Cache hits (a network met again) are not drawn.</p>")


def _hypervolume_note(data: ReportData) -> str:
    return ("<p class='note'>Hypervolume after each generation, over every successful evaluation up to it, "
            "with each objective divided by the reference point fixed when the run started (in meta.json), so "
            "numbers stay comparable across resumes; 1 would dominate everything up to the reference.</p>")


def _table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset(),
           mono: set[int] = frozenset()) -> str:
    """Rows of already-escaped cells; `numeric` columns right-aligned, `mono` ones in monospace."""
    def cell(i: int, text: str) -> str:
        kind = " class='num'" if i in numeric else " class='mono'" if i in mono else ""
        return f"<td{kind}>{text}</td>"

    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _front_table(data: ReportData) -> str:
    if not data.front:
        return "<p>The front is empty: no successful evaluation yet.</p>"
    hparams = bool(data.genes)
    header = ["id", "name", "gen", "operator", "parents", "accuracy", "MACs", "params"]
    header += ["hyperparameters"] * hparams + ["genome"]
    rows = []
    for i in data.front:
        e = data.individuals[i]
        rows.append([str(e.id), html.escape(e.genome.name), str(e.generation), html.escape(e.operator),
                     " ".join(f"#{p}" for p in e.parents), f"{e.accuracy:.4f}", si(e.macs), si(e.params)]
                    + [html.escape(_hparams_text(e))] * hparams + [html.escape(e.genome.describe())])
    return _table(header, rows, numeric={0, 2, 5, 6, 7}, mono={len(header) - 1})


def _genome_files(data: ReportData) -> str:
    parts = ["<p class='note'>Each front genome in the genome-file format (save as a .yaml file; "
             "<code>evonas inspect</code> and <code>--seed-genomes</code> read it):</p>"]
    for i in data.front:
        e = data.individuals[i]
        label = f"#{e.id} {e.genome.name}".strip() + f" · accuracy {e.accuracy:.4f} · MACs {si(e.macs)}"
        parts.append(f"<details><summary>{html.escape(label)}<button class='copy' data-target='genome-{e.id}'>"
                     f"copy</button></summary><pre id='genome-{e.id}'>{html.escape(genome_file(data, e))}</pre>"
                     f"</details>")
    return "\n".join(parts) if data.front else ""


def _lineage_table(data: ReportData) -> str:
    if not data.front:
        return ""
    rows = [[str(i), str(len(data.lineage[i]) - 1), html.escape(lineage_text(data, i))] for i in data.front]
    return ("<p class='note'>Parent chains back to the first population: each ancestor once, "
            "as <code>#id operator(parents)</code>.</p>"
            + _table(["front id", "ancestors", "parent chain"], rows, {0, 1}, {2}))


def _files_table(data: ReportData) -> str:
    files = data.from_files
    if not files:
        return "<p>No genome from a file was evaluated in this run (see <code>--seed-genomes</code>).</p>"
    front = set(data.front)
    rows = [[html.escape(e.genome.name or "-"), str(e.id), str(e.generation), e.status,
             f"{e.accuracy:.4f}" if e.ok else "-", si(e.macs), si(e.params), "yes" if e.id in front else "no",
             html.escape(e.genome.source)] for e in files]
    return ("<p class='note'>Drawn as labelled stars in the plots above.</p>"
            + _table(["name", "id", "gen", "status", "accuracy", "MACs", "params", "on the front", "source"], rows,
                     {1, 2, 4, 5, 6}))


def _gene_warnings(data: ReportData) -> str:
    warned = [g.warning for g in data.genes if g.warning]
    if not warned:
        return (f"<p class='note'>No gene's best candidates (top {BEST_SHARE:.0%} by accuracy, at least {BEST_MIN}) "
                f"crowd an edge of its range.</p>")
    return "".join(f"<div class='warning'>⚠ {html.escape(w)}</div>" for w in warned)


def _failures(data: ReportData) -> str:
    failed = [e for e in data.evaluations if not e.ok]
    if not failed:
        return ""
    rows = [[str(e.id), str(e.generation), html.escape(e.operator), str(e.status), html.escape(e.error or "")]
            for e in failed]
    return (f"<h2>Failed and infeasible evaluations ({len(failed)})</h2><details><summary>show</summary>"
            + _table(["id", "gen", "operator", "status", "reason"], rows, {0, 1}) + "</details>")
