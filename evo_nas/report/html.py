"""How the run report looks: one HTML page of plotly figures (report.figures), architecture
drawings (report.drawing), tables and genome files, laid out from a `report.data.ReportData`.
The page is self-contained (plotly.js inline) unless asked to share one plotly.min.js.   [plotly]
"""

from __future__ import annotations

import html
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import plotly.io as pio

from evo_nas import noise, spaces
from evo_nas.genome_io import dumps
from evo_nas.records import Record, Status
from evo_nas.report import drawing, lecture
from evo_nas.report.data import BEST_MIN, BEST_SHARE, ReportData, evaluation_rows, predictor_generations, si
from evo_nas.report.figures import (
    accuracy_text,
    hparam_figure,
    hparams_text,
    lineage_figure,
    objective_figure,
    objectives_3d,
    predictor_figure,
    progress_figure,
)

# Every page says who wrote it, so `report --out` can tell its own reports from other files.
GENERATOR = "<meta name='generator' content='evonas report'>"
PLOTLY_FILE = "plotly.min.js"  # the shared copy's name, beside the pages that use it

# -- text helpers ------------------------------------------------------------------------------------

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


def duration(seconds: float | None) -> str:
    """3.2 s, 4 min 12 s, 2 h 05 min."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes} min {s:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def proxy_text(config: dict) -> str:
    """What each candidate's training was: epochs, images, skeleton, rate, batch, seeds (what
    config.yaml has of them)."""
    c = config
    entry = spaces.REGISTRY.get(c.get("space"))
    fields = entry.skeleton_fields if entry else frozenset()
    epochs, depth = c.get("epochs"), c.get("depth")
    parts = [f"{epochs:g} epoch{'s' * (epochs != 1)}" if isinstance(epochs, int | float) else None,
             f"{_images(c.get('train_limit'))} training / {_images(c.get('val_limit'))} validation images"]
    if "init_channels" in fields and c.get("init_channels") is not None:
        parts.append(f"C={c['init_channels']}")
    if "depth" in fields and depth is not None:
        parts.append(f"{depth} cell{'s' * (depth != 1)}" + (" per stage" if c.get("space") == "nb201" else ""))
    parts += [f"lr {c['lr']:g} (peak, per batch 256)" if c.get("lr") is not None else None,
              f"batch {c['batch_size']}" if c.get("batch_size") is not None else None]
    if (c.get("repeats") or 1) > 1:
        parts.append(f"{c['repeats']} seeds each (mean ± sd)")
    if c.get("fidelity") == "sha":
        parts.append(f"successive halving, {c.get('sha_rungs')} rungs")
    return " · ".join(p for p in parts if p)


def noise_text(data: ReportData) -> str:
    """The proxy's measured noise (noise.py): the runs folder's `evonas fidelity` or the shipped tables."""
    try:
        return noise.statement(data.config, Path(data.path).parent, data.config.get("repeats") or 1)
    except (TypeError, ValueError, KeyError):  # a run of an older evonas: settings it did not have
        return noise.UNKNOWN


def _images(limit) -> str:
    return "all" if limit is None else f"{limit:,}"


# -- the page ------------------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1500px;
       padding: 16px 24px; color: #222; }
h1 { margin-bottom: 4px; } h2 { margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.facts { display: grid; grid-template-columns: max-content 1fr max-content 1fr; gap: 2px 14px;
         margin: 8px 0; font-size: 14px; }
.facts dt { color: #777; } .facts dd { margin: 0; }
.plots { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 8px; }
@media (max-width: 1200px) { .plots { grid-template-columns: minmax(0, 1fr); } }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f6f6; position: sticky; top: 0; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono { font-family: monospace; font-size: 12px; max-width: 640px; word-break: break-all; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th[aria-sort=ascending]::after { content: " ▲"; }
table.sortable th[aria-sort=descending]::after { content: " ▼"; }
tr.failed td, tr.infeasible td { color: #a33; } tr.cache td { color: #888; }
.scroll { max-height: 640px; overflow: auto; border: 1px solid #e4e4e4; }
.filters { display: flex; gap: 12px; align-items: center; font-size: 13px; margin: 8px 0; }
pre { background: #f7f7f7; border: 1px solid #e4e4e4; padding: 8px; font-size: 12px; overflow-x: auto; }
details { margin: 4px 0; } summary { cursor: pointer; }
.warning { background: #fff4e5; border-left: 4px solid #f0a020; padding: 8px 12px; margin: 8px 0; }
.note { color: #666; font-size: 13px; }
button.copy { font-size: 12px; margin-left: 8px; }
#arch-panel { position: fixed; right: 16px; bottom: 16px; background: white; border: 1px solid #bbb;
              box-shadow: 0 2px 10px rgba(0,0,0,.15); padding: 8px 10px; max-width: 46vw; max-height: 70vh;
              overflow: auto; font-size: 12px; z-index: 10; }
#arch-panel button { float: right; border: none; background: none; font-size: 16px; cursor: pointer; }
.arch-head { font-weight: 600; margin-bottom: 4px; }
div.front { display: inline-block; }
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

# Sorting (click a header; numbers by their data-v, blanks last) and, for the table of every
# evaluation, filtering by words and status.
TABLE_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  var body = table.tBodies[0];
  table.tHead.addEventListener('click', function (event) {
    var th = event.target.closest('th');
    if (!th) return;
    var k = th.cellIndex, numeric = th.classList.contains('num');
    var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
    Array.prototype.forEach.call(th.parentNode.cells, function (c) { c.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending');
    var key = function (row) {
      var cell = row.cells[k], v = cell.getAttribute('data-v');
      return v === null ? cell.textContent : v;
    };
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (!numeric) return dir * x.localeCompare(y);
      x = x === '' ? NaN : Number(x); y = y === '' ? NaN : Number(y);
      if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);
      return dir * (x - y);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
(function () {
  var table = document.getElementById('evaluations');
  if (!table) return;
  var words = document.getElementById('evaluations-filter'), status = document.getElementById('evaluations-status');
  var count = document.getElementById('evaluations-count');
  var filter = function () {
    var want = status.value, needles = words.value.toLowerCase().split(/\\s+/).filter(Boolean), shown = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var text = row.textContent.toLowerCase();
      var keep = (!want || row.getAttribute('data-status') === want) &&
        needles.every(function (n) { return text.indexOf(n) >= 0; });
      row.hidden = !keep;
      if (keep) shown++;
    });
    count.textContent = shown + ' of ' + table.tBodies[0].rows.length + ' shown';
  };
  words.addEventListener('input', filter);
  status.addEventListener('change', filter);
  filter();
})();
"""

# Plotly's hover text cannot hold SVG: hovering a point shows its drawing in a side panel.
HOVER_JS = """
window.addEventListener('load', function () {
  var panel = document.getElementById('arch-panel');
  if (!panel) return;
  panel.querySelector('button').addEventListener('click', function () { panel.hidden = true; });
  document.querySelectorAll('.js-plotly-plot').forEach(function (gd) {
    gd.on('plotly_hover', function (event) {
      var point = event.points && event.points[0];
      var drawing = point && point.customdata !== undefined && document.getElementById('arch-' + point.customdata);
      if (!drawing) return;
      panel.querySelector('.body').innerHTML = drawing.innerHTML;
      panel.hidden = false;
    });
  });
});
"""


def render_html(data: ReportData, plotly_js: str = "inline", tail: str = "") -> str:
    """The whole report as one HTML page. plotly_js: "inline" (self-contained, the default) or
    "shared" (the page loads plotly.min.js from beside it). `tail`: HTML put before </body>."""
    if plotly_js not in ("inline", "shared"):
        raise ValueError(f"plotly_js: inline or shared, got {plotly_js!r}")
    drawings = {i: _drawing(data, data.individuals[i]) for i in hover_drawn(data)}
    parts = [  # (heading, body), numbered in order below
        ("Accuracy against cost", [
            "<div class='plots'>" + _plot(objective_figure(data, "macs"), "plot-macs")
            + _plot(objective_figure(data, "params"), "plot-params") + _plot(objectives_3d(data), "plot-3d")
            + "</div>", _points_note(data)]),
        ("Progress", [_plot(progress_figure(data), "plot-progress"), _hypervolume_note(data)]),
        ("The front", [_front_table(data, drawings), _genome_files(data)]),
        ("Ancestry of the front", [_plot(lineage_figure(data), "plot-lineage") if data.front
                                   else "<p>No front yet.</p>", _lineage_table(data)]),
        ("Genomes from files", [_files_table(data)]),
    ]
    if data.config.get("predictor"):
        figure = predictor_figure(predictor_generations(data.history))
        parts.append(("The predictor", [_plot(figure, "plot-predictor")]))
    if data.genes:
        parts.append(("Hyperparameter genes", [_gene_warnings(data), _plot(hparam_figure(data), "plot-hparams")]))
    if data.config.get("space") == "cells":
        parts.append(("The published cells on ImageNet", [_published_cells()]))
    parts.append(("Every evaluation", [_evaluations_table(data), _panel(data, drawings)]))
    sections = [_header(data)] + [piece for k, (heading, body) in enumerate(parts, 1)
                                  for piece in (f"<h2>{k}. {heading}</h2>", *body)]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>" + GENERATOR
            + f"<title>evonas report: {html.escape(data.name)}</title><style>{CSS}</style>{_plotly_script(plotly_js)}"
            + "</head><body>\n"
            + "\n".join(sections)
            + f"\n<script>{COPY_JS}{TABLE_JS}{HOVER_JS}</script>\n{tail}</body></html>\n")


def _published_cells() -> str:
    """The lecture's two figures: published architectures' ImageNet top-1 against mult-adds and
    parameters, with evonas's own counts of the cells it builds (report/lecture.py)."""
    note = ("<p class='note'>Where the cells of this space stand when they are trained properly: each "
            "paper's ImageNet top-1 against its mult-adds and parameters in the mobile setting (224x224, "
            "under 600M mult-adds), beside evonas's exact counts of the same cells in DARTS' ImageNet "
            "network. The front above was measured on the search's proxy, not on ImageNet; to place one "
            "of its cells here, export it and run <code>evonas inspect GENOME --compare --figure "
            "FILE</code>.</p>")
    by_macs, by_params = lecture.figures()
    return note + "<div class='plots'>" + _plot(by_macs, "plot-published-macs") \
        + _plot(by_params, "plot-published-params") + "</div>"


def _plotly_script(plotly_js: str) -> str:
    if plotly_js == "shared":
        return f"<script src='{PLOTLY_FILE}'></script>"
    from plotly.offline import get_plotlyjs

    return f"<script>{get_plotlyjs()}</script>"


def _plot(fig: dict, div_id: str) -> str:
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True}, validate=False,
                       default_height=f"{fig['layout']['height']}px")


HOVER_DRAWINGS = 400  # individuals drawn for the hover panel; beyond it only the front and its ancestors


def hover_drawn(data: ReportData) -> list[int]:
    """The ids whose drawing the page carries: every individual while there are at most
    HOVER_DRAWINGS (a cells drawing is ~9 KB), else the front and its ancestors."""
    if len(data.individuals) <= HOVER_DRAWINGS:
        return list(data.individuals)
    return sorted({i for chain in data.lineage.values() for i in chain})


def _drawing(data: ReportData, e: Record) -> str | None:
    return drawing.draw(e.genome, reductions=data.config.get("reductions"))


def _header(data: ReportData) -> str:
    c, evals, t = data.config, data.evaluations, data.timing
    ok = [e for e in evals if e.ok]
    failed, infeasible = (sum(1 for e in evals if e.status is s) for s in (Status.FAILED, Status.INFEASIBLE))
    best = max(ok, key=lambda e: e.accuracy, default=None)
    reference = ", ".join(f"error {r:g}" if o == "accuracy" else f"{o} {si(r)}"
                          for o, r in zip(data.objectives, data.reference))
    entry = spaces.REGISTRY.get(c.get("space"))
    versions = data.meta.get("versions")
    facts = {
        "search": f"{c.get('algorithm')} on {c.get('space')} / {c.get('dataset')} ({c.get('device')})",
        "objectives": ", ".join(data.objectives),
        "proxy training": proxy_text(c),
        "noise": noise_text(data),
        "fitness": entry.fitness if entry else "validation accuracy",
        "evaluations": f"{len(evals)}: {len(ok)} ok, {failed} failed, {infeasible} infeasible",
        "cache hits": f"{data.cache_hits} (networks met again; not counted as evaluations)",
        "generations": f"{len(data.generations)} (0 to {len(data.generations) - 1})" if data.generations else "0",
        "front": f"{len(data.front)} genome{'s' * (len(data.front) != 1)}",
        "best accuracy": f"{accuracy_text(best)} (#{best.id})" if best is not None else "-",
        "hypervolume": f"{data.generations[-1].hypervolume:.4f}" if data.generations else "-",
        "time per evaluation": (f"median {duration(t.median)}, mean {duration(t.mean)} (n={t.trained})"
                                if t.trained else "-"),
        "time in total": f"{duration(t.total)} of training; {duration(t.span)} from start to the last evaluation",
        "reference point": reference,
        "versions": (", ".join(f"{k} {v}" for k, v in versions.items()) if isinstance(versions, dict)
                     else "not recorded (a run from an older evonas)"),
        "started": str(data.meta.get("created", "?")), "report written": time.strftime("%Y-%m-%d %H:%M:%S"),
        "run directory": data.path}
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts.items())
    return f"<h1>evonas run {html.escape(data.name)}</h1><dl class='facts'>{items}</dl>"


def _points_note(data: ReportData) -> str:
    sd = any(e.accuracy_sd is not None for e in data.evaluations)
    return ("<p class='note'>One point per evaluation, coloured by generation; failed and infeasible ones are "
            "crosses at accuracy 0 (those that failed before their network could be counted are in the table of "
            "every evaluation). Circles: the run's Pareto front over every evaluation, for its objectives "
            f"({', '.join(data.objectives)}); the dotted staircase: the front of accuracy and the plot's axis. "
            "Stars: genomes from files. Cache hits (a network met again) are not drawn."
            + (" Error bars: ± one standard deviation over the seeds an individual was trained with." if sd else "")
            + " Hover a point to see its architecture (the panel at the bottom right"
            + ("" if len(data.individuals) <= HOVER_DRAWINGS else
               f"; with over {HOVER_DRAWINGS} individuals, for the front and its ancestors only")
            + "); drag the 3-D view to turn it.</p>")


def _hypervolume_note(data: ReportData) -> str:
    return ("<p class='note'>Hypervolume after each generation, over every successful evaluation up to it, "
            "with each objective divided by the reference point fixed when the run started (in meta.json), so "
            "numbers stay comparable across resumes; 1 would dominate everything up to the reference.</p>")


def _table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset(),
           mono: set[int] = frozenset(), attrs: str = "", row_attrs: list[str] | None = None) -> str:
    """Rows of already-escaped cells; `numeric` columns right-aligned, `mono` ones in monospace. A
    cell may be a (text, sort value) pair."""
    def cell(i: int, content) -> str:
        text, value = content if isinstance(content, tuple) else (content, None)
        kind = " class='num'" if i in numeric else " class='mono'" if i in mono else ""
        return f"<td{kind}{'' if value is None else f' data-v={value!r}'}>{text}</td>"

    head = "".join(f"<th{' class=num' if i in numeric else ''}>{h}</th>" for i, h in enumerate(header))
    extra = row_attrs or [""] * len(rows)
    body = "".join(f"<tr{a}>" + "".join(cell(i, c) for i, c in enumerate(row)) + "</tr>"
                   for row, a in zip(rows, extra))
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _number(value: float | None, text: str) -> tuple[str, str]:
    """A table cell that sorts by its value (blank: none)."""
    return text, "" if value is None else f"{value:.10g}"


def _front_table(data: ReportData, drawings: dict[int, str | None]) -> str:
    if not data.front:
        return "<p>The front is empty: no successful evaluation yet.</p>"
    members = [data.individuals[i] for i in data.front]
    hparams = bool(data.genes)
    header = ["id", "name", "gen", "operator", "parents", "accuracy", "MACs", "params"]
    header += ["hyperparameters"] * hparams + ["architecture"]
    rows = []
    for e in members:
        picture = drawings[e.id]
        arch = (f"<div class='arch-box' data-id='{e.id}' title='{html.escape(e.genome.describe())}'>{picture}</div>"
                if picture else f"<span class='mono'>{html.escape(e.genome.describe())}</span>")
        rows.append([str(e.id), html.escape(e.genome.name), str(e.generation), html.escape(e.operator),
                     " ".join(f"#{p}" for p in e.parents), _number(e.accuracy, accuracy_text(e)),
                     _number(e.macs, si(e.macs)), _number(e.params, si(e.params))]
                    + [html.escape(hparams_text(e))] * hparams + [arch])
    key = drawing.legend(e.genome for e in members)
    return ("<div class='front'>" + (f"<p class='note'>Each member's architecture, drawn from its genome (inputs "
                                     f"left, then blocks by depth; hover an edge for its op):</p>{key}" if key else "")
            + _table(header, rows, numeric={0, 2, 5, 6, 7}, attrs=" id='front' class='sortable'") + "</div>")


def _genome_files(data: ReportData) -> str:
    parts = ["<p class='note'>Each front genome in the genome-file format (save as a .yaml file; "
             "<code>evonas inspect</code> and <code>--seed-genomes</code> read it):</p>"]
    for i in data.front:
        e = data.individuals[i]
        label = f"#{e.id} {e.genome.name}".strip() + f" · accuracy {accuracy_text(e)} · MACs {si(e.macs)}"
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
             accuracy_text(e), si(e.macs), si(e.params), "yes" if e.id in front else "no",
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


EVALUATION_HEADER = ["id", "rung", "gen", "operator", "parents", "status", "accuracy", "MACs", "params", "epochs",
                     "seconds", "images/s", "cache of", "reason", "genome"]


def _evaluations_table(data: ReportData) -> str:
    """One row per evaluation (report.data.evaluation_rows): sortable, filterable (plain JavaScript)."""
    table = evaluation_rows(data.history, data.front)
    attrs = [f" class='{'cache' if r['cache_of'] is not None else r['status'].value}' "
             f"data-status='{r['status'].value}' data-id='{r['id']}' data-rung='{r['rung']}'" for r in table]
    counts = Counter(str(r["status"]) for r in table)
    options = "".join(f"<option value='{s}'>{s} ({counts[s]})</option>" for s in map(str, Status) if counts[s])
    reasons = Counter(r["error"] for r in table if r["error"])
    common = ("<p class='note'>Most common reasons: " + "; ".join(
        f"{html.escape(why)} ({n})" for why, n in reasons.most_common(3)) + "</p>") if reasons else ""
    return (f"<p class='note'>Every evaluation in the order the journal has them: each individual at each rung "
            f"of successive halving, its trainings with several seeds combined (mean ± sd), and cache hits "
            f"(greyed). Click a header to sort.</p>{common}"
            f"<div class='evaluations'><div class='filters'><label>filter <input id='evaluations-filter' type='search' "
            f"placeholder='words, e.g. failed memory'></label><label>status <select id='evaluations-status'>"
            f"<option value=''>all</option>{options}</select></label><span id='evaluations-count'></span></div>"
            f"<div class='scroll'>"
            + _table(EVALUATION_HEADER, [_evaluation_cells(r) for r in table], mono={14},
                     numeric={0, 1, 2, 6, 7, 8, 9, 10, 11, 12}, attrs=" id='evaluations' class='sortable'",
                     row_attrs=attrs) + "</div></div>")


def _evaluation_cells(r: dict) -> list:
    def number(name: str, text) -> tuple[str, str]:
        value = r[name]
        return _number(value, "-" if value is None else text(value))

    sd = f" ± {r['accuracy_sd']:.4f}" if r["accuracy_sd"] is not None else ""
    return [str(r["id"]), str(r["rung"]), str(r["generation"]), html.escape(r["operator"]),
            " ".join(f"#{p}" for p in r["parents"]), str(r["status"]), number("accuracy", lambda v: f"{v:.4f}{sd}"),
            number("macs", si), number("params", si), number("epochs", lambda v: f"{v:g}"),
            number("wall_time", lambda v: f"{v:.1f}"), number("images_per_s", lambda v: f"{v:,.0f}"),
            _number(r["cache_of"], "" if r["cache_of"] is None else f"#{r['cache_of']}"),
            html.escape(r["error"] or ""), html.escape(r["description"])]


def _panel(data: ReportData, drawings: dict[int, str | None]) -> str:
    """The hover panel and, hidden in templates, each individual's drawing."""
    def head(e: Record) -> str:
        name = f" {e.genome.name}" if e.genome.name else ""
        return html.escape(f"#{e.id}{name} · generation {e.generation} · accuracy {accuracy_text(e)} · "
                           f"MACs {si(e.macs)} · params {si(e.params)}")

    templates = "".join(f"<template id='arch-{i}'><div class='arch-head'>{head(data.individuals[i])}</div>{svg}"
                        f"</template>" for i, svg in drawings.items() if svg)
    if not templates:
        return ""
    return ("<aside id='arch-panel' hidden><button title='close' aria-label='close'>×</button>"
            f"<div class='body'></div></aside>{templates}")
