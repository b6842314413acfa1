"""What the run report shows, computed from the journal's History: a small `ReportData`, and the
table of every evaluation that the page and `evo_nas.load` share (docs/report.md says what is
counted, and how).   [no plotly]
"""

from __future__ import annotations

import math
import os
import statistics
from collections import deque
from dataclasses import dataclass
from datetime import datetime

from evo_nas import pareto, predictor
from evo_nas.config import flat_config
from evo_nas.errors import RunDirError
from evo_nas.records import History, Record, combined
from evo_nas.spaces.hparams import HParamSpace
from evo_nas.store import RunDir

BEST_SHARE, BEST_MIN = 0.10, 3  # "the best candidates": the top 10% by accuracy, at least 3
BORDER = 0.05  # "at the border": within 5% of the range's width from an edge
HARD_LIMITS = {"dropout": (0.0, 1.0)}  # edges that cannot be widened past
GENE_LABELS = {"lr": "learning rate", "weight_decay": "weight decay", "dropout": "dropout",
               "optimizer": "optimizer"}
FRONT_TRACE = "Pareto front"  # the name the browser test looks for


# -- the data ------------------------------------------------------------------------------

def from_file(record: Record) -> bool:
    """Seeded from a genome file (genomes/ or the user's own)."""
    return record.operator.startswith("seed:")


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
class Timing:
    """Wall time of the trainings (a record's `wall_time`), and the run's span on the clock."""

    trained: int  # evaluations with a wall time (an individual's repeats at one rung: one, their sum)
    median: float | None  # seconds per evaluation
    mean: float | None
    total: float  # seconds of training, summed
    span: float | None  # seconds from the run's start to its last record (a resumed run's pauses included)


@dataclass(frozen=True)
class ReportData:
    name: str  # the run's name (config.yaml's run.name), else its folder's
    path: str
    config: dict  # flat: setting name -> value
    meta: dict
    objectives: tuple[str, ...]
    reference: tuple[float, ...]  # the reference point, in the objectives' order (minimised)
    individuals: dict[int, Record]  # every individual's final record by id, cache hits included
    front: tuple[int, ...]  # ids, best accuracy first
    generations: tuple[GenerationStats, ...]
    lineage: dict[int, tuple[int, ...]]  # front id -> it and its ancestors, breadth first
    best: tuple[int, ...]  # the best candidates by accuracy (for the hyperparameter rule)
    genes: tuple[Gene, ...]  # empty unless the run searches hyperparameters
    history: History  # the journal as read, for history.csv and the table of every evaluation
    timing: Timing

    @property
    def evaluations(self) -> list[Record]:
        return [e for e in self.individuals.values() if e.cache_of is None]

    @property
    def from_files(self) -> list[Record]:
        return [e for e in self.evaluations if from_file(e)]

    @property
    def cache_hits(self) -> int:
        return sum(1 for e in self.individuals.values() if e.cache_of is not None)


@dataclass(frozen=True)
class PredictorGeneration:
    """How the predictor (`--predictor`) did on one generation it screened, from the journal."""

    generation: int
    tau: float  # Kendall tau between its predicted and the measured accuracies (nan: under 2 children)
    children: int  # screened children that trained and succeeded
    screen_s: float | None  # seconds of screening (measures, fit, prediction) per child bred
    train_s: float | None  # seconds of training per child trained (their mean wall time)


def predictor_generations(history: History) -> tuple[PredictorGeneration, ...]:
    finals = history.finals()
    out = []
    for g, (tau, n) in predictor.taus(predictor.pairs(finals)).items():
        members = [r for r in finals if r.generation == g and r.predicted is not None]
        screen = [r.screen_s for r in members if r.screen_s is not None]
        walls = [r.wall_time for r in members if r.wall_time]
        out.append(PredictorGeneration(g, tau, n, screen[0] if screen else None,
                                       statistics.fmean(walls) if walls else None))
    return tuple(out)


def report_data(run_dir: str | os.PathLike | RunDir) -> ReportData:
    """Read a run directory and compute everything the report shows. Raises RunDirError (a
    UserError) for a directory that is not a readable run; writes nothing."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    meta, config = run.meta(), flat_config(run.config())
    history = run.history()
    objectives = _objectives(run, meta.get("objectives") or config.get("objectives") or pareto.OBJECTIVES)
    reference = _reference(run, meta, objectives)
    individuals = {r.id: r for r in history.finals()}
    evaluations = history.evaluations()
    front = history.front(objectives)
    best = best_candidates(evaluations)
    hparams = bool(config.get("hparams"))
    return ReportData(
        name=str(config.get("name") or run.path.name), path=str(run.path), config=config, meta=meta,
        objectives=objectives, reference=reference, individuals=individuals, front=tuple(e.id for e in front),
        generations=tuple(generation_stats(evaluations, objectives, reference)),
        lineage={e.id: ancestry(individuals, e.id) for e in front},
        best=tuple(e.id for e in best), genes=tuple(hparam_genes(best)) if hparams else (), history=history,
        timing=timing(history, meta.get("created")))


def _objectives(run: RunDir, names) -> tuple[str, ...]:
    if not isinstance(names, list | tuple) or not names or any(n not in pareto.OBJECTIVES for n in names):
        raise RunDirError(f"{run.meta_file}: objectives {names!r} are not names from {', '.join(pareto.OBJECTIVES)}")
    return tuple(names)


def _reference(run: RunDir, meta: dict, objectives: tuple[str, ...]) -> tuple[float, ...]:
    point = meta.get("reference_point")
    if not isinstance(point, dict) or any(not isinstance(point.get(o), (int, float)) for o in objectives):
        raise RunDirError(f"{run.meta_file}: no usable reference_point for {', '.join(objectives)}")
    return tuple(float(point[o]) for o in objectives)


def normalised_points(evaluations: list[Record], objectives, reference) -> list[pareto.Vector]:
    return [pareto.normalise(pareto.vector(e.result, objectives), reference) for e in evaluations if e.ok]


def generation_stats(evaluations: list[Record], objectives, reference) -> list[GenerationStats]:
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


def ancestry(individuals: dict[int, Record], member: int) -> tuple[int, ...]:
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


def timing(history: History, created: str | None) -> Timing:
    """Seconds per evaluation (the sum of its trainings' wall times), in all, and on the clock."""
    times = [math.fsum(r.wall_time for r in group if r.wall_time is not None) for group in _trainings(history)
             if group[0].cache_of is None and any(r.wall_time is not None for r in group)]
    stamps = [_when(r.finished) for r in history.records]
    start, last = _when(created), max((t for t in stamps if t is not None), default=None)
    return Timing(len(times), statistics.median(times) if times else None,
                  statistics.fmean(times) if times else None, math.fsum(times),
                  (last - start).total_seconds() if start is not None and last is not None else None)


def _when(stamp: object) -> datetime | None:
    """A journal or meta.json time stamp (local time, ISO 8601); None if absent or unreadable."""
    try:
        return datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
    except ValueError:
        return None


def best_candidates(evaluations: list[Record]) -> list[Record]:
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


def hparam_genes(best: list[Record], space: HParamSpace | None = None) -> list[Gene]:
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


# -- the table of every evaluation: one row per (individual, rung) (the HTML table, evo_nas.load) --

RESULT_COLUMNS = ("accuracy", "accuracy_sd", "repeats", "macs", "params", "train_loss", "epochs", "wall_time",
                  "images_per_s", "device", "path", "precision", "fallback")
ROW_COLUMNS = ("id", "rung", "generation", "operator", "parents", "status", *RESULT_COLUMNS, "cache_of", "error",
               "finished", "final", "on_front", "name", "description", "key", "genome")
HPARAM_FIELDS = ("lr", "weight_decay", "dropout", "optimizer")  # columns of runs that search them


def evaluations_of(history: History) -> list[Record]:
    """Each evaluation of the journal, in the order first written: an individual at one rung
    (the trainings of `--repeats` combined, as History.final combines them), or a cache hit.
    Without repeats these are the journal's lines."""
    return [combined(records) for records in _trainings(history)]


def _trainings(history: History) -> list[list[Record]]:
    """The journal's records grouped by evaluation (id and rung), in the order first written."""
    groups: dict[tuple[int, int], list[Record]] = {}
    for r in history.records:
        groups.setdefault((r.id, r.rung), []).append(r)
    return list(groups.values())


def evaluation_rows(history: History, front: tuple[int, ...] | set[int]) -> list[dict]:
    """evaluations_of(history) as rows of plain values, ROW_COLUMNS (and HPARAM_FIELDS when some
    genome has them): who, from whom, what came out. `final`: the individual's last rung;
    `on_front`: final and a member of `front`."""
    members, top = set(front), {}
    for r in history.records:
        top[r.id] = max(top.get(r.id, r.rung), r.rung)
    hparams = any(r.genome.hparams is not None for r in history.records)
    rows = []
    for r in evaluations_of(history):
        final = r.rung == top[r.id]
        own = {"final": final, "on_front": final and r.id in members, "name": r.genome.name,
               "description": r.genome.describe(), "genome": r.genome}
        row = {c: own[c] if c in own else getattr(r, c) for c in ROW_COLUMNS}
        if hparams:
            row.update({k: getattr(r.genome.hparams, k, None) for k in HPARAM_FIELDS})
        rows.append(row)
    return rows


def si(n: float | None) -> str:
    """A count as people read it: 3.35M, 528M, 1.2G."""
    if n is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"
