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

import math
import os
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from evo_nas import pareto
from evo_nas.errors import RunDirError, UserError
from evo_nas.genome import Genome, describe, to_dict
from evo_nas.genome_io import parse_genome
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
    front = [ok[i] for i in pareto.first_front([pareto.vector(e.result(), objectives) for e in ok])]
    return sorted(front, key=lambda e: (-e.accuracy, e.macs, e.params, e.id))


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
        front = [pool[i] for i in pareto.first_front(pool)]  # only the front adds volume
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

def _si(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"


def render_html(data: ReportData) -> str:
    from evo_nas import report_html

    return report_html.render_html(data)


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


