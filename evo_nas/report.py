"""The run report: front, hypervolume, lineage and hyperparameters, derived from the journal.

`report_data(run_dir)` reads a run directory and computes a small `ReportData` (no plotly);
`render_html(data)` turns it into one self-contained page (plotly.js embedded once, so the file
opens offline); `write_report` writes it with front.csv and history.csv; `refresh` is what the
runner calls after each generation. The journal is the truth: everything is recomputed from it.

What is counted, and how:
- One point per individual: its final record (the highest successive-halving rung it reached).
- Cache hits (records with `cache_of`: a network evaluated before, whose result was reused) are
  not evaluations. They are left out of the plots, the front, the hypervolume and the counts,
  and kept in history.csv and in the lineage, since an individual served from the cache can
  still be a parent.
- The front: non-dominated sorting over every successful evaluation of the run (not only the
  last population), for the run's objectives.
- Hypervolume of generation g: over every successful evaluation with generation <= g, each
  objective divided by the reference point fixed in meta.json when the run started (error
  against 1.0, MACs and params against their reference values), measured from (1, ..., 1).
- A hyperparameter gene is flagged when at least half of the best candidates (the top 10% by
  accuracy, at least 3) lie within 5% of the same edge of its range, measured in log space for
  log-scaled genes: the optimum may lie outside the range. An edge that is a hard limit
  (dropout 0) is never flagged.
"""

from __future__ import annotations

import html
import math
import os
import re
import time
import warnings
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path

from evo_nas import pareto
from evo_nas.errors import RunDirError, UserError
from evo_nas.genome import Genome, describe, to_dict
from evo_nas.genome_io import dumps, parse_genome
from evo_nas.spaces.hparams import HParamSpace
from evo_nas.store import RunDir, atomic_write, history_frame, write_csv

BEST_SHARE, BEST_MIN = 0.10, 3  # "the best candidates": the top 10% by accuracy, at least 3
BORDER = 0.05  # "at the border": within 5% of the range's width from an edge
HARD_LIMITS = {"dropout": (0.0, 1.0)}  # edges that cannot be widened past
GENE_LABELS = {"lr": "learning rate", "weight_decay": "weight decay", "dropout": "dropout",
               "optimizer": "optimizer"}
FRONT_TRACE = "Pareto front"  # the name the browser test looks for


# -- the data ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Evaluation:
    """An individual's final record, checked and typed."""

    id: int
    generation: int
    operator: str
    parents: tuple[int, ...]
    status: str
    accuracy: float | None
    macs: int | None
    params: int | None
    rung: int
    cache_of: int | None
    error: str
    genome: Genome

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def from_file(self) -> bool:
        """Seeded from a genome file (genomes/ or the user's own)."""
        return self.operator.startswith("seed:")

    def result(self) -> dict:
        return {"status": self.status, "accuracy": self.accuracy, "macs": self.macs, "params": self.params}


@dataclass(frozen=True)
class GenerationStats:
    generation: int
    evaluations: int  # evaluations made in this generation (failed ones included)
    hypervolume: float  # of everything up to this generation
    best_accuracy: float | None  # best so far
    generation_best: float | None  # best among this generation's evaluations


@dataclass(frozen=True)
class Gene:
    name: str
    bounds: tuple[float, float] | None  # None: a categorical gene
    log: bool
    warning: str | None

    @property
    def label(self) -> str:
        return GENE_LABELS.get(self.name, self.name)


@dataclass(frozen=True)
class ReportData:
    name: str
    path: str
    config: dict
    meta: dict
    objectives: tuple[str, ...]
    reference: tuple[float, ...]  # the reference point, in the objectives' order (minimised)
    individuals: dict[int, Evaluation]  # every individual by id, cache hits included
    front: tuple[int, ...]  # ids, best accuracy first
    generations: tuple[GenerationStats, ...]
    lineage: dict[int, tuple[int, ...]]  # front id -> it and its ancestors, breadth first
    best: tuple[int, ...]  # the best candidates by accuracy (for the hyperparameter rule)
    genes: tuple[Gene, ...]  # empty unless the run searches hyperparameters
    records: list[dict]  # the journal as read, for history.csv

    @property
    def evaluations(self) -> list[Evaluation]:
        return [e for e in self.individuals.values() if e.cache_of is None]

    @property
    def from_files(self) -> list[Evaluation]:
        return [e for e in self.evaluations if e.from_file]

    @property
    def cache_hits(self) -> int:
        return sum(1 for e in self.individuals.values() if e.cache_of is not None)


def report_data(run_dir: str | os.PathLike | RunDir) -> ReportData:
    """Read a run directory and compute everything the report shows. Raises RunDirError (a
    UserError) for a directory that is not a readable run; writes nothing."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    meta, config = run.meta(), run.config()
    records = run.journal()
    objectives = _objectives(run, meta.get("objectives") or config.get("objectives") or pareto.OBJECTIVES)
    reference = _reference(run, meta, objectives)
    individuals = final_evaluations(records, str(run.journal_file))
    evaluations = [e for e in individuals.values() if e.cache_of is None]
    front = run_front(evaluations, objectives)
    best = best_candidates(evaluations)
    return ReportData(
        name=run.path.name, path=str(run.path), config=config, meta=meta, objectives=objectives,
        reference=reference, individuals=individuals, front=tuple(e.id for e in front),
        generations=tuple(generation_stats(evaluations, objectives, reference)),
        lineage={e.id: ancestry(individuals, e.id) for e in front},
        best=tuple(e.id for e in best),
        genes=tuple(hparam_genes(best)) if config.get("hparams") else (),
        records=records)


def _objectives(run: RunDir, names) -> tuple[str, ...]:
    if not isinstance(names, list | tuple) or not names or any(n not in pareto.OBJECTIVES for n in names):
        raise RunDirError(f"{run.meta_file}: objectives {names!r} are not names from {', '.join(pareto.OBJECTIVES)}")
    return tuple(names)


def _reference(run: RunDir, meta: dict, objectives: tuple[str, ...]) -> tuple[float, ...]:
    point = meta.get("reference_point")
    if not isinstance(point, dict) or any(not isinstance(point.get(o), (int, float)) for o in objectives):
        raise RunDirError(f"{run.meta_file}: no usable reference_point for {', '.join(objectives)}")
    return tuple(float(point[o]) for o in objectives)


def final_evaluations(records: list[dict], where: str) -> dict[int, Evaluation]:
    """Each individual's record at the highest rung it reached, by id."""
    final: dict[int, dict] = {}
    for r in records:
        if not isinstance(r["id"], int) or isinstance(r["id"], bool):
            raise RunDirError(f"{where}: a record with id {r['id']!r}: damaged record")
        if r["id"] not in final or r.get("rung", 0) >= final[r["id"]].get("rung", 0):
            final[r["id"]] = r
    return {i: _evaluation(final[i], where) for i in sorted(final)}


def _evaluation(r: dict, where: str) -> Evaluation:
    at = f"{where}: evaluation {r['id']}"
    if not isinstance(r.get("generation"), int) or r.get("status") not in ("ok", "failed", "infeasible"):
        raise RunDirError(f"{at}: damaged record (no generation or status)")
    if r["status"] == "ok" and not all(isinstance(r.get(k), (int, float)) for k in ("accuracy", "macs", "params")):
        raise RunDirError(f"{at}: damaged record (a successful evaluation without accuracy, macs, params)")
    return Evaluation(
        id=r["id"], generation=r["generation"], operator=str(r.get("operator", "")),
        parents=tuple(r.get("parents") or ()), status=r["status"], accuracy=r.get("accuracy"),
        macs=r.get("macs"), params=r.get("params"), rung=r.get("rung", 0), cache_of=r.get("cache_of"),
        error=str(r.get("error") or ""), genome=parse_genome(r.get("genome"), at))


def run_front(evaluations: list[Evaluation], objectives: tuple[str, ...]) -> list[Evaluation]:
    """The non-dominated successful evaluations of the whole run, best accuracy first."""
    ok = [e for e in evaluations if e.ok]
    front = [ok[i] for i in nondominated([pareto.vector(e.result(), objectives) for e in ok])]
    return sorted(front, key=lambda e: (-e.accuracy, e.macs, e.params, e.id))


def nondominated(vectors: list[pareto.Vector]) -> list[int]:
    """Indices of the first front, as `pareto.first_front` gives them, in O(n * front) rather than
    DEAP's all-pairs O(n^2): in lexicographic order a dominator always comes first, and whatever
    dominates a point is itself dominated by, or is, a front member found before it."""
    front: list[int] = []
    for i in sorted(range(len(vectors)), key=lambda i: vectors[i]):
        v = vectors[i]
        if not any(_dominates(vectors[j], v) for j in front):
            front.append(i)
    return sorted(front)


def _dominates(a: pareto.Vector, b: pareto.Vector) -> bool:
    return all(x <= y for x, y in zip(a, b)) and a != b


def normalised_points(evaluations: list[Evaluation], objectives, reference) -> list[pareto.Vector]:
    return [pareto.normalise(pareto.vector(e.result(), objectives), reference) for e in evaluations if e.ok]


def generation_stats(evaluations: list[Evaluation], objectives, reference) -> list[GenerationStats]:
    """Hypervolume and best accuracy after each generation, cumulative over the run."""
    if not evaluations:
        return []
    unit = (1.0,) * len(objectives)
    stats, front, best = [], [], None
    for g in range(max(e.generation for e in evaluations) + 1):
        made = [e for e in evaluations if e.generation == g]
        pool = front + normalised_points(made, objectives, reference)
        front = [pool[i] for i in nondominated(pool)]  # only the front adds volume
        here = max((e.accuracy for e in made if e.ok), default=None)
        best = here if best is None or (here is not None and here > best) else best
        stats.append(GenerationStats(g, len(made), pareto.hypervolume(front, unit), best, here))
    return stats


def ancestry(individuals: dict[int, Evaluation], member: int) -> tuple[int, ...]:
    """`member` and all its ancestors, breadth first; each id once (crossover joins lines)."""
    order, queue, seen = [], deque([member]), {member}
    while queue:
        i = queue.popleft()
        order.append(i)
        for p in individuals[i].parents:
            if p in individuals and p not in seen:
                seen.add(p)
                queue.append(p)
    return tuple(order)


def best_candidates(evaluations: list[Evaluation]) -> list[Evaluation]:
    ok = sorted((e for e in evaluations if e.ok), key=lambda e: (-e.accuracy, e.id))
    return ok[: max(BEST_MIN, math.ceil(BEST_SHARE * len(ok)))]


def border_edges(values: list[float], bounds: tuple[float, float], log: bool,
                 hard: tuple[float, float] | None = None) -> list[str]:
    """The edges ("lower", "upper") of `bounds` that at least half of `values` sit within
    BORDER of (positions in log space when `log`); edges equal to a hard limit never count."""
    if not values:
        return []
    scale = math.log if log else float
    low, high = scale(bounds[0]), scale(bounds[1])
    positions = [(scale(v) - low) / (high - low) for v in values]
    near = {"lower": sum(p <= BORDER for p in positions), "upper": sum(p >= 1 - BORDER for p in positions)}
    limits = dict(zip(("lower", "upper"), hard or (None, None)))
    edges = dict(zip(("lower", "upper"), bounds))
    return [side for side in ("lower", "upper") if 2 * near[side] >= len(values) and edges[side] != limits[side]]


def hparam_genes(best: list[Evaluation], space: HParamSpace | None = None) -> list[Gene]:
    """The hyperparameter genes of the run's space, each with its border warning if any."""
    space = space or HParamSpace()  # the runner builds the space with these defaults
    best = [e for e in best if e.genome.hparams is not None]
    genes = []
    for name in ("lr", "weight_decay", "dropout"):
        bounds, log = getattr(space, name), name in space.LOG_SCALED
        values = [getattr(e.genome.hparams, name) for e in best]
        edges = border_edges(values, bounds, log, HARD_LIMITS.get(name))
        genes.append(Gene(name, bounds, log, _border_warning(name, values, bounds, edges)))
    genes.append(Gene("optimizer", None, False, None))
    return genes


def _border_warning(name: str, values: list[float], bounds, edges: list[str]) -> str | None:
    if not edges:
        return None
    where = " and ".join(f"the {side} edge ({bounds[side == 'upper']:g})" for side in edges)
    return (f"{GENE_LABELS[name]}: most of the {len(values)} best candidates sit at {where} of its range "
            f"{bounds[0]:g} to {bounds[1]:g}; the best value may lie outside it, so widen the range")


# -- rows for tables (terminal, CSV, JSON) --------------------------------------------------

def front_rows(run_dir: str | os.PathLike | RunDir) -> list[dict]:
    """The front as JSON-ready rows, best accuracy first."""
    data = report_data(run_dir)
    return [_row(data.individuals[i]) for i in data.front]


def _row(e: Evaluation) -> dict:
    return {"id": e.id, "name": e.genome.name, "generation": e.generation, "operator": e.operator,
            "parents": list(e.parents), "accuracy": e.accuracy, "macs": e.macs, "params": e.params,
            "description": describe(e.genome), "genome": to_dict(e.genome)}


def front_frame(rows: list[dict]):
    import json

    import pandas as pd

    flat = [{**r, "parents": " ".join(map(str, r["parents"])),
             "genome": json.dumps(r["genome"], sort_keys=True, separators=(",", ":"))} for r in rows]
    return pd.DataFrame(flat, columns=["id", "name", "generation", "operator", "parents", "accuracy", "macs",
                                       "params", "description", "genome"])


def print_front(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not rows:
        console.print("the front is empty: no successful evaluation yet")
        return
    table = Table(title=f"Pareto front ({len(rows)} genomes)", title_justify="left")
    for column, justify in (("id", "right"), ("gen", "right"), ("accuracy", "right"), ("MACs", "right"),
                            ("params", "right"), ("operator", "left"), ("genome", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for r in rows:
        genome = f"{r['name']}: {r['description']}" if r["name"] else r["description"]
        table.add_row(str(r["id"]), str(r["generation"]), f"{r['accuracy']:.4f}", _si(r["macs"]),
                      _si(r["params"]), escape(r["operator"]), escape(genome))  # cells print as [..]
    console.print(table)


# -- writing -------------------------------------------------------------------------------

def write_report(run_dir: str | os.PathLike | RunDir, out: str | os.PathLike | None = None) -> Path:
    """Write report.html, front.csv and history.csv into the run directory, or only the HTML
    to `out`. Everything is read and rendered before the first byte is written."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    data = report_data(run)
    page = render_html(data)
    if out is None:
        return _write_run_files(run, data, page)
    path = Path(out)
    try:
        atomic_write(path, page)
    except OSError as err:
        raise UserError(f"{path}: cannot write the report ({err.strerror or err})") from None
    return path


def _write_run_files(run: RunDir, data: ReportData, page: str) -> Path:
    write_csv(history_frame(data.records), run.history_file)
    write_csv(front_frame([_row(data.individuals[i]) for i in data.front]), run.path / "front.csv")
    atomic_write(run.path / "report.html", page)
    return run.path / "report.html"


def refresh(run: RunDir) -> None:
    """Rewrite the report after a generation. A run directory or disk problem becomes a
    warning, never a failed run: the search matters more than its report. Bugs still raise."""
    try:
        data = report_data(run)
        _write_run_files(run, data, render_html(data))
    except (UserError, OSError) as err:
        warnings.warn(f"{run.path}: report not refreshed ({err})", stacklevel=2)


# -- rendering: text helpers -----------------------------------------------------------------

def _si(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"


def _wrap(text: str, width: int = 70) -> list[str]:
    """Break a long genome description after commas or spaces (cells have no spaces)."""
    lines, line = [], ""
    for piece in re.split(r"(?<=[, ])", text):
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = ""
        line += piece
    return lines + [line] if line else lines


def _hparams_text(e: Evaluation) -> str:
    hp = e.genome.hparams
    if hp is None:
        return ""
    return f"lr {hp.lr:.3g} · weight decay {hp.weight_decay:.3g} · dropout {hp.dropout:.2f} · {hp.optimizer}"


def _hover(data: ReportData, e: Evaluation) -> str:
    """Hover text (plotly's HTML subset): who, from whom, how good, what genome."""
    parents = ", ".join(f"#{p}" for p in e.parents) or "none"
    lines = [f"<b>#{e.id}</b>{' ' + html.escape(e.genome.name) if e.genome.name else ''}"
             f"  generation {e.generation}  {html.escape(e.operator)}", f"parents {parents}"]
    if e.ok:
        lines.append(f"accuracy {e.accuracy:.4f}   MACs {_si(e.macs)}   params {_si(e.params)}")
    else:
        lines.append(f"<b>{e.status}</b>: {html.escape(e.error[:120])}")
        lines.append(f"MACs {_si(e.macs)}   params {_si(e.params)}")
    if data.config.get("fidelity") == "sha":
        lines.append(f"rung {e.rung + 1} of {data.config.get('sha_rungs')}")
    if e.genome.hparams is not None:
        lines.append(_hparams_text(e))
    lines += [html.escape(x) for x in _wrap(describe(e.genome))]
    return "<br>".join(lines)


def _axis_title(name: str) -> str:
    return {"accuracy": "validation accuracy", "macs": "MACs per image (log scale)",
            "params": "parameters (log scale)"}[name]


def genome_file(data: ReportData, e: Evaluation) -> str:
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


def _points(name: str, members: list[Evaluation], data: ReportData, x, y, **style) -> dict:
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
    plane = sorted(run_front(ok, ("accuracy", x)), key=cost)
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
            "symbol": ["star" if e.from_file else "circle" for e in members]}))
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
    import plotly.io as pio

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
    failed, infeasible = (sum(1 for e in evals if e.status == s) for s in ("failed", "infeasible"))
    best = max((e.accuracy for e in ok), default=None)
    reference = ", ".join(f"error {r:g}" if o == "accuracy" else f"{o} {_si(r)}"
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
                     " ".join(f"#{p}" for p in e.parents), f"{e.accuracy:.4f}", _si(e.macs), _si(e.params)]
                    + [html.escape(_hparams_text(e))] * hparams + [html.escape(describe(e.genome))])
    return _table(header, rows, numeric={0, 2, 5, 6, 7}, mono={len(header) - 1})


def _genome_files(data: ReportData) -> str:
    parts = ["<p class='note'>Each front genome in the genome-file format (save as a .yaml file; "
             "<code>evonas inspect</code> and <code>--seed-genomes</code> read it):</p>"]
    for i in data.front:
        e = data.individuals[i]
        label = f"#{e.id} {e.genome.name}".strip() + f" · accuracy {e.accuracy:.4f} · MACs {_si(e.macs)}"
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
             f"{e.accuracy:.4f}" if e.ok else "-", _si(e.macs), _si(e.params), "yes" if e.id in front else "no",
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
    rows = [[str(e.id), str(e.generation), html.escape(e.operator), e.status, html.escape(e.error)] for e in failed]
    return (f"<h2>Failed and infeasible evaluations ({len(failed)})</h2><details><summary>show</summary>"
            + _table(["id", "gen", "operator", "status", "reason"], rows, {0, 1}) + "</details>")
