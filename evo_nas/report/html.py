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

from evo_nas import noise, spaces
from evo_nas.genome_io import dumps
from evo_nas.progress import duration
from evo_nas.records import Record, Status
from evo_nas.report import drawing, lecture
from evo_nas.report.data import ReportData, predictor_generations, si
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
from evo_nas.report.shell import guide, plot, render, table
from evo_nas.spaces.hparams import BEST_MIN, BEST_SHARE

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
    """The whole report as one HTML page (report.shell: plotly_js "inline" or "shared"; `tail`:
    HTML put before </body>)."""
    drawings = _drawings(data)
    sections = [
        ("Accuracy against cost", [
            "<div class='plots'>" + plot(objective_figure(data, "macs"), "plot-macs")
            + plot(objective_figure(data, "params"), "plot-params") + plot(objectives_3d(data), "plot-3d")
            + "</div>", _points_note(data)]),
        ("Progress", [plot(progress_figure(data), "plot-progress"), _hypervolume_note(data)]),
        ("The front", [_front_table(data, drawings), _genome_files(data)]),
        ("Ancestry of the front", [plot(lineage_figure(data), "plot-lineage") if data.front
                                   else "<p>No front yet.</p>", _lineage_table(data)]),
        ("Genomes from files", [_files_table(data)]),
    ]
    if data.config.get("predictor"):
        figure = predictor_figure(predictor_generations(data.history))
        sections.append(("The predictor", [plot(figure, "plot-predictor")]))
    if data.genes:
        sections.append(("Hyperparameter genes", [_gene_warnings(data), plot(hparam_figure(data), "plot-hparams")]))
    if data.config.get("space") == "cells":
        sections.append(lecture.section(note=PUBLISHED_NOTE))
    sections.append(("Every evaluation", [_evaluations_table(data), _panel(data, drawings)]))
    return render(f"evonas report: {data.name}", f"evonas run {data.name}", sections, _header(data),
                  COPY_JS + TABLE_JS + HOVER_JS, plotly_js, tail)


PUBLISHED_NOTE = guide(
    "Where the cells of this space stand when trained properly: each paper's ImageNet top-1 against its mult-adds "
    "and parameters in the mobile setting (224x224, under 600M mult-adds), beside evonas's exact counts of the same "
    "cells in DARTS' ImageNet network. The front above was measured on the proxy, not on ImageNet; to place one of "
    "its cells here: <code>evonas inspect GENOME --compare --figure FILE</code>.")


HOVER_DRAWINGS = 400  # individuals drawn for the hover panel; beyond it only the front and its ancestors


def _drawings(data: ReportData) -> dict[int, str | None]:
    """The drawings the page carries: every individual's while there are at most HOVER_DRAWINGS (a
    cells drawing is ~9 KB), else the front's and its ancestors'."""
    few = len(data.individuals) <= HOVER_DRAWINGS
    ids = data.individuals if few else sorted({i for chain in data.lineage.values() for i in chain})
    return {i: drawing.draw(data.individuals[i].genome, reductions=data.config.get("reductions")) for i in ids}


def _header(data: ReportData) -> str:
    c, evals, t = data.config, data.evaluations, data.timing
    ok = [e for e in evals if e.ok]
    failed, infeasible = (sum(1 for e in evals if e.status is s) for s in (Status.FAILED, Status.INFEASIBLE))
    best = max(ok, key=lambda e: e.accuracy, default=None)
    reference = ", ".join(f"error {r:g}" if o == "accuracy" else f"{o} {si(r)}"
                          for o, r in zip(data.objectives, data.reference or ()))
    search = "a fidelity measurement (its own page: fidelity.html)" if data.reference is None else c.get("algorithm")
    entry = spaces.REGISTRY.get(c.get("space"))
    versions = data.meta.get("versions")
    facts = {
        "search": f"{search} on {c.get('space')} / {c.get('dataset')} ({c.get('device')})",
        "objectives": ", ".join(data.objectives),
        "proxy training": proxy_text(c),
        "noise": noise_text(data),
        "fitness": entry.fitness if entry else "validation accuracy",
        "evaluations": f"{len(evals)}: {len(ok)} ok, {failed} failed, {infeasible} infeasible",
        "cache hits": f"{data.cache_hits} (networks met again; not counted as evaluations)",
        "generations": f"{len(data.generations)} (0 to {len(data.generations) - 1})" if data.generations else "0",
        "front": f"{len(data.front)} genome{'s' * (len(data.front) != 1)}",
        "best accuracy": f"{accuracy_text(best)} (#{best.id})" if best is not None else "-",
        "hypervolume": f"{data.generations[-1].hypervolume:.4f}" if data.generations and data.reference else "-",
        "time per evaluation": (f"median {duration(t.median)}, mean {duration(t.mean)} (n={t.trained})"
                                if t.trained else "-"),
        "time in total": f"{duration(t.total)} of training; {duration(t.span)} from start to the last evaluation",
        "reference point": reference or "none: no hypervolume",
        "versions": (", ".join(f"{k} {v}" for k, v in versions.items()) if isinstance(versions, dict)
                     else "not recorded (a run from an older evonas)"),
        "started": str(data.meta.get("created", "?")), "report written": time.strftime("%Y-%m-%d %H:%M:%S"),
        "run directory": data.path}
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts.items())
    return f"<dl class='facts'>{items}</dl>"


def _points_note(data: ReportData) -> str:
    sd = any(e.accuracy_sd is not None for e in data.evaluations)
    return guide("One point per evaluation, coloured by generation; failed and infeasible ones are crosses at "
                 "accuracy 0 (those that failed before their network could be counted are in the table of every "
                 "evaluation). Circles: the run's Pareto front over every evaluation, for its objectives "
                 f"({', '.join(data.objectives)}); the dotted staircase: the front of accuracy and the plot's axis. "
                 "Stars: genomes from files. Cache hits (a network met again) are not drawn."
                 + (" Error bars: ± one standard deviation over the seeds an individual was trained with." * sd)
                 + " Hover a point to see its architecture (the panel at the bottom right"
                 + ("" if len(data.individuals) <= HOVER_DRAWINGS else
                    f"; with over {HOVER_DRAWINGS} individuals, for the front and its ancestors only")
                 + "); drag the 3-D view to turn it.")


def _hypervolume_note(data: ReportData) -> str:
    return guide("Hypervolume after each generation, over every successful evaluation up to it, with each "
                 "objective divided by the reference point fixed when the run started (in meta.json), so numbers "
                 "stay comparable across resumes; 1 would dominate everything up to the reference.")


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
            + table(header, rows, numeric={0, 2, 5, 6, 7}, attrs=" id='front' class='sortable'") + "</div>")


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
            + table(["front id", "ancestors", "parent chain"], rows, {0, 1}, {2}))


def _files_table(data: ReportData) -> str:
    files = data.from_files
    if not files:
        return "<p>No genome from a file was evaluated in this run (see <code>--seed-genomes</code>).</p>"
    front = set(data.front)
    rows = [[html.escape(e.genome.name or "-"), str(e.id), str(e.generation), e.status,
             accuracy_text(e), si(e.macs), si(e.params), "yes" if e.id in front else "no",
             html.escape(e.genome.source)] for e in files]
    return ("<p class='note'>Drawn as labelled stars in the plots above.</p>"
            + table(["name", "id", "gen", "status", "accuracy", "MACs", "params", "on the front", "source"], rows,
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
    """One row per evaluation (ReportData.rows): sortable, filterable (plain JavaScript)."""
    rows = data.rows()
    attrs = [f" class='{'cache' if r['cache_of'] is not None else r['status'].value}' "
             f"data-status='{r['status'].value}' data-id='{r['id']}' data-rung='{r['rung']}'" for r in rows]
    counts = Counter(str(r["status"]) for r in rows)
    options = "".join(f"<option value='{s}'>{s} ({counts[s]})</option>" for s in map(str, Status) if counts[s])
    reasons = Counter(r["error"] for r in rows if r["error"])
    common = guide("Most common reasons: " + "; ".join(
        f"{html.escape(why)} ({n})" for why, n in reasons.most_common(3))) if reasons else ""
    return (guide("Every evaluation in the order the journal has them: each individual at each rung of successive "
                  "halving, its trainings with several seeds combined (mean ± sd), and cache hits (greyed). Click a "
                  "header to sort.") + common
            + "<div class='evaluations'><div class='filters'><label>filter <input id='evaluations-filter' "
            "type='search' placeholder='words, e.g. failed memory'></label><label>status <select "
            f"id='evaluations-status'><option value=''>all</option>{options}</select></label><span "
            "id='evaluations-count'></span></div><div class='scroll'>"
            + table(EVALUATION_HEADER, [_evaluation_cells(r) for r in rows], mono={14},
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
