"""What the run report shows, computed from the journal's History: a small `ReportData`
(docs/report.md says what is counted, and how).   [no plotly]
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
from evo_nas.records import History, Record
from evo_nas.spaces.hparams import NUMERIC, HParamSpace, best_candidates, border_edges
from evo_nas.store import RunDir, rows

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
    hypervolume: float | None  # of everything up to this generation; None: no reference point
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
    reference: tuple[float, ...] | None  # the reference point, in the objectives' order; None: a fidelity run
    individuals: dict[int, Record]  # every individual's final record by id, cache hits included
    front: tuple[int, ...]  # ids, best accuracy first
    generations: tuple[GenerationStats, ...]
    lineage: dict[int, tuple[int, ...]]  # front id -> it and its ancestors, breadth first
    best: tuple[int, ...]  # the best candidates (spaces.hparams.best_candidates)
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

    def rows(self) -> list[dict]:
        """The table of every evaluation (store.COLUMNS), in the journal's order: the page's and
        evo_nas.load's."""
        return rows(self.history.rung_records(), self.history, self.front)


def predictor_generations(history: History) -> tuple[predictor.PredictorGeneration, ...]:
    return predictor.generations(history.finals())


def report_data(run_dir: str | os.PathLike | RunDir) -> ReportData:
    """Read a run directory and compute everything the report shows. Raises RunDirError (a
    UserError) for a directory that is not a readable run; writes nothing."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir.open(run_dir)
    meta, config = run.meta(), flat_config(run.config())
    history = run.history()
    objectives = run.objectives()
    reference = _reference(run, meta, objectives)
    individuals = {r.id: r for r in history.finals()}
    evaluations = history.evaluations()
    front = history.front(objectives)
    best = best_candidates(evaluations)
    hparams = HParamSpace.from_settings(config) if config.get("hparams") else None
    return ReportData(
        name=str(config.get("name") or run.path.name), path=str(run.path), config=config, meta=meta,
        objectives=objectives, reference=reference, individuals=individuals, front=tuple(e.id for e in front),
        generations=tuple(generation_stats(evaluations, objectives, reference)),
        lineage={e.id: ancestry(individuals, e.id) for e in front},
        best=tuple(e.id for e in best), genes=tuple(hparam_genes(best, hparams)) if hparams else (), history=history,
        timing=timing(history, meta.get("created")))


def _reference(run: RunDir, meta: dict, objectives: tuple[str, ...]) -> tuple[float, ...] | None:
    point = meta.get("reference_point")
    if meta.get("kind") == "fidelity":
        return None  # no hypervolume: a fidelity measurement is not a search
    if not isinstance(point, dict) or any(not isinstance(point.get(o), (int, float)) for o in objectives):
        raise RunDirError(f"{run.meta_file}: no usable reference_point for {', '.join(objectives)}")
    return tuple(float(point[o]) for o in objectives)


def generation_stats(evaluations: list[Record], objectives, reference) -> list[GenerationStats]:
    """Hypervolume (None without a reference point) and best accuracy after each generation,
    cumulative over the run."""
    if not evaluations:
        return []
    unit = (1.0,) * len(objectives)
    stats, front, best = [], [], None
    for g in range(max(e.generation for e in evaluations) + 1):
        made = [e for e in evaluations if e.generation == g]
        pool = front + [pareto.normalise(pareto.vector(e.result, objectives), reference) for e in made
                        if e.ok and reference]
        front = [pool[i] for i in pareto.first_front(pool)]  # only the front adds volume
        here = max((e.accuracy for e in made if e.ok), default=None)
        best = here if best is None or (here is not None and here > best) else best
        volume = pareto.hypervolume(front, unit) if reference else None
        stats.append(GenerationStats(g, len(made), volume, best, here))
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
    times = [r.wall_time for r in history.rung_records() if r.cache_of is None and r.wall_time is not None]
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


def hparam_genes(best: list[Record], space: HParamSpace) -> list[Gene]:
    """The hyperparameter genes of the run's space, each with its border warning if any."""
    genes = []
    for name in NUMERIC:
        bounds, log = getattr(space, name), name in space.LOG_SCALED
        values = [getattr(e.genome.hparams, name) for e in best]
        edges = border_edges(values, bounds, log, space.HARD_LIMITS.get(name))
        genes.append(Gene(name, bounds, log, _border_warning(name, values, bounds, edges)))
    genes.append(Gene("optimizer", None, False, None))
    return genes


def _border_warning(name: str, values: list[float], bounds, edges: list[str]) -> str | None:
    if not edges:
        return None
    where = " and ".join(f"the {side} edge ({bounds[side == 'upper']:g})" for side in edges)
    return (f"{GENE_LABELS[name]}: most of the {len(values)} best candidates sit at {where} of its range "
            f"{bounds[0]:g} to {bounds[1]:g}; the best value may lie outside it, so widen the range")


def si(n: float | None) -> str:
    """A count as people read it: 3.35M, 528M, 1.2G."""
    if n is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"
