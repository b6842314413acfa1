"""Search quality, measured: every algorithm, many seeds, one budget, on the NAS-Bench-201 table.

The protocol and what the summary holds are in docs/study.md.   [stdlib; plotly for the page]
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import io
import math
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from evo_nas import nb201_table, pareto
from evo_nas.algorithms import ALGORITHMS
from evo_nas.config import PREDICTED, SearchConfig, StopConfig
from evo_nas.errors import ConfigError
from evo_nas.files import atomic_write
from evo_nas.predictor import Measures, Predictor
from evo_nas.search import Archive, Individual, Search, Termination, lookup_evaluator
from evo_nas.spaces.nb201 import NB201Genome, NB201Space, nb201_key
from evo_nas.stats import wilcoxon_signed_rank
from evo_nas.variation import OPERATOR_SETS

HV_PARAMS_MARGIN = 1.1  # HV reference: 10% above the largest network, so it too adds volume
HV_OBJECTIVES = ("accuracy", "params")
# SETTINGS were chosen at TUNED_BUDGET; below it `for_budget` keeps each population's share of the
# budget (and the tournament's of the population). Checked on CIFAR-10, tuning seeds 1000-1499
# (aging) and 1000-1999 (NSGA-II), mean test accuracy +- standard error: aging at budget 50
# P=16, S=8 (what the rule gives) 93.96 +- 0.02, against 93.92 (P=10, S=5), 93.89 (P=25, S=12),
# 93.82 (P=16, S=4), 93.61 (P=8, S=2); at 100, P=33, S=16 (the rule) 94.23 +- 0.01, against 94.20
# (P=25, S=12), 94.18 (P=16, S=8), 94.14 (P=10, S=5). NSGA-II at 50: P=6 (the rule) 93.58 +- 0.02,
# P=10 93.53; at 100: P=13 (the rule) 93.88 +- 0.01, P=10 93.91, P=20 93.87 (seeds 1000-1499).
TUNED_BUDGET = 150
MIN_POPULATION = 4

# Each algorithm's settings in the study, chosen on CIFAR-10 with tuning seeds 1000-1999 (never
# the reported 0-99) and used unchanged on every data set.
SETTINGS: dict[str, SearchConfig] = {
    # Regularized evolution, steady state: one child per step, so each choice of parent sees
    # every result so far. At 150 evaluations strong selection pays: a grid P in 5..50 x S in
    # 2..25 (seeds 1000-1299) put P=50, S=25 first; on seeds 1000-1999 it gives 94.31% against
    # 94.30% (P=50, S=50), 94.29% (P=75, S=40), 94.27% (P=50, S=10), 94.25% (P=100, S=50),
    # 94.24% (P=20, S=10) and 94.16% (P=10, S=3, the common NB201 setting); standard errors
    # 0.006-0.008. So: a third of the budget for the random initial population, then
    # tournaments of half the population.
    "aging": SearchConfig("aging", population=50, offspring=1, sample=25, objectives=HV_OBJECTIVES),
    # NSGA-II over (accuracy, params), the study's hypervolume objectives; population 20 as the
    # Optuna reference, so ~7 generations fit 150 evaluations.
    "nsga2": SearchConfig("nsga2", population=20, crossover=0.5, objectives=HV_OBJECTIVES),
    # Random search: the population is only the archive of the front it reports.
    "random": SearchConfig("random", population=10, objectives=HV_OBJECTIVES),
    "aging+predictor": SearchConfig("aging", population=50, offspring=5, sample=25, objectives=HV_OBJECTIVES,
                                    predictor=True),
    "nsga2+predictor": SearchConfig("nsga2", population=20, crossover=0.5, objectives=HV_OBJECTIVES, predictor=True),
}


@dataclass(frozen=True)
class StudyConfig:
    space: str = "nb201"
    dataset: str = "cifar10"
    algorithms: tuple[str, ...] = ("aging", "nsga2", "random")
    seeds: int = 100  # seeds first_seed .. first_seed + seeds - 1, the same for every algorithm
    budget: int = 150  # distinct networks evaluated per search
    out: str | Path | None = "runs/study"  # where the CSV and HTML go; None: write nothing
    first_seed: int = 0
    operators: str = SearchConfig.operators  # the variation operator set of every algorithm (variation.py)
    noise: float = 0.0  # aging's and NSGA-II's selection tie width (SearchConfig.tie_width); random has none


@dataclass
class TableSearch:
    """One search: the table indices of the distinct networks it evaluated, in order."""

    algorithm: str
    seed: int
    evaluated: list[int]
    individuals: int  # including children served from the record of an isomorphic twin
    fell_back: int | None = None  # with a predictor: the generation from which it bred without it (None: never)


@dataclass
class StudyResult:
    config: StudyConfig
    rows: list[dict]  # one per (algorithm, seed), as in the CSV
    curves: dict[str, dict[str, list[list[float]]]]  # algorithm -> "val"/"test" -> per seed trace
    space_hv: float
    optimum_test: float  # best 200-epoch test accuracy in the space, percent
    target: float | None  # random search's mean final test accuracy, percent (None: not run)
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)


# -- the search over the table ---------------------------------------------------------------

@functools.cache
def _arch_key(edges: tuple[str, ...]) -> str:
    return nb201_key(edges)  # ~0.1 ms; a study asks for the same few thousand cells many times


@dataclass(frozen=True)
class _TableSpace(NB201Space):
    """The nb201 space with its canonical keys memoised."""

    def arch_key(self, genome: NB201Genome) -> str:
        return _arch_key(genome.edges)


SPACE = _TableSpace()


@functools.cache
def _results(dataset: str) -> tuple:
    """Every cell's Result, by table index (shared; Results are immutable)."""
    return tuple(nb201_table.result(i, dataset) for i in range(nb201_table.CELLS))


def table_search(dataset: str, settings: SearchConfig, seed: int, budget: int) -> tuple[Search, list[int]]:
    """A Search whose evaluations are table lookups, and the list it fills with the table index
    of each distinct network it evaluates, in order. Nothing is written anywhere. With
    `settings.predictor`, its predictor measures a cell by the table too (params, MACs, synflow)."""
    archive, evaluated = Archive(SPACE), []
    by_edges, results = nb201_table.table().by_edges, _results(dataset)

    def result_of(ind: Individual):
        evaluated.append(by_edges[ind.genome.edges])
        return results[evaluated[-1]]

    search = Search(SPACE, settings, random.Random(seed), archive, lookup_evaluator(archive, result_of),
                    Termination.of(StopConfig(budget=budget), settings))
    if settings.predictor:
        search.predictor = Predictor(SPACE, seed, functools.partial(_measures, dataset))
    return search, evaluated


@functools.cache
def _all_measures(dataset: str) -> tuple[Measures, ...]:
    """What a predictor knows of each cell before training it, by table index: the table's params
    and MACs and the shipped synflow score (the data-free ones: there are no images offline)."""
    params, macs = (nb201_table.table().column(dataset, c) for c in ("params", "macs"))
    return tuple(Measures(p, m, (("synflow", s),)) for p, m, s in zip(params, macs, nb201_table.synflow(dataset)))


def _measures(dataset: str, genome: NB201Genome) -> Measures:
    return _all_measures(dataset)[nb201_table.table().by_edges[genome.edges]]


def run_one(algorithm: str, dataset: str, seed: int, budget: int, operators: str = SearchConfig.operators,
            noise: float = 0.0) -> TableSearch:
    s = for_budget(dataclasses.replace(SETTINGS[algorithm], operators=operators, tie_width=noise), budget)
    search, evaluated = table_search(dataset, s, seed, budget)
    ALGORITHMS[s.algorithm](search)
    return TableSearch(algorithm, seed, evaluated, search.archive.next_id,
               search.predictor.fell_back if search.predictor is not None else None)


def for_budget(s: SearchConfig, budget: int) -> SearchConfig:
    """The settings at `budget`: below TUNED_BUDGET, the population keeps its share of the budget and
    the tournament its share of the population (aging at 50: P=16, S=8, not the random search
    that P=50 would be); the initial population always fits the budget."""
    if budget < TUNED_BUDGET:
        population = max(MIN_POPULATION, s.population * budget // TUNED_BUDGET)
        s = dataclasses.replace(s, population=population, sample=max(2, s.sample * population // s.population))
    if s.population > budget:
        s = dataclasses.replace(s, population=budget, sample=min(s.sample, budget))
    return s


# -- the study ---------------------------------------------------------------------------------

def check(cfg: StudyConfig) -> None:
    if cfg.space != "nb201":
        raise ConfigError(f"space: the study has a table for nb201 only, got {cfg.space!r}")
    nb201_table.check_dataset(cfg.dataset)
    unknown = [a for a in cfg.algorithms if a not in SETTINGS]
    if unknown or not cfg.algorithms:
        raise ConfigError(f"algorithms: choose from {', '.join(SETTINGS)}; got {', '.join(cfg.algorithms) or 'none'}")
    if len(set(cfg.algorithms)) != len(cfg.algorithms):
        raise ConfigError(f"algorithms: each at most once, got {', '.join(cfg.algorithms)}")
    if cfg.operators not in OPERATOR_SETS:
        raise ConfigError(f"operators: must be one of {', '.join(OPERATOR_SETS)}, got {cfg.operators!r}")
    if not 0 <= cfg.noise < 1:
        raise ConfigError(f"noise: must be at least 0 and below 1 (a fraction of accuracy), got {cfg.noise}")
    if cfg.seeds < 1 or cfg.budget < 1:
        raise ConfigError(f"seeds and budget must be at least 1, got {cfg.seeds} and {cfg.budget}")
    if cfg.out is not None and Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise ConfigError(f"out: {cfg.out} exists and is not a folder")


def run_study(cfg: StudyConfig) -> StudyResult:
    check(cfg)
    start = time.perf_counter()
    seeds = range(cfg.first_seed, cfg.first_seed + cfg.seeds)
    runs = [run_one(a, cfg.dataset, s, cfg.budget, cfg.operators, cfg.noise) for a in cfg.algorithms for s in seeds]
    result = summarise(cfg, runs, time.perf_counter() - start)
    if cfg.out is not None:
        result.files = write(result, Path(cfg.out))
    return result


def summarise(cfg: StudyConfig, runs: list[TableSearch], seconds: float) -> StudyResult:
    table = nb201_table.table()
    val, test, params = (table.column(cfg.dataset, c) for c in ("val12", "test200", "params"))
    ref = (1.0, HV_PARAMS_MARGIN * max(params))
    space_hv = hypervolume(range(nb201_table.CELLS), val, params, ref)
    traced = [traces(run.evaluated, val, test, cfg.budget) for run in runs]
    curves = {a: {"val": [v for (v, _), r in zip(traced, runs) if r.algorithm == a],
                  "test": [t for (_, t), r in zip(traced, runs) if r.algorithm == a]} for a in cfg.algorithms}
    target = statistics.fmean(t[-1] for t in curves["random"]["test"]) if "random" in curves else None
    rows = []
    for run, (_, t) in zip(runs, traced):
        best = max(run.evaluated, key=lambda i: val[i])  # max keeps the first of equals: the earliest
        hv = hypervolume(run.evaluated, val, params, ref)
        rows.append({"algorithm": run.algorithm, "seed": run.seed, "evaluations": len(run.evaluated),
                     "individuals": run.individuals, "index": best, "arch": table.archs[best],
                     "val12": val[best], "test200": test[best], "params": params[best],
                     "hypervolume": hv, "hv_gap": space_hv - hv, "evals_to_match": first_reaching(t, target)})
    return StudyResult(cfg, rows, curves, space_hv, max(test), target, seconds)


def traces(evaluated: list[int], val: list, test: list, budget: int) -> tuple[list[float], list[float]]:
    """After each evaluation: the best validation accuracy so far, and the test accuracy of the
    network holding it (what the search would return if stopped there). Padded to `budget`
    with the final values if the search stopped early (space exhausted)."""
    best_val, best_test, v, t = -math.inf, math.nan, [], []
    for i in evaluated:
        if val[i] > best_val:
            best_val, best_test = val[i], test[i]
        v.append(best_val)
        t.append(best_test)
    return v + v[-1:] * (budget - len(v)), t + t[-1:] * (budget - len(t))


def first_reaching(curve: list[float], target: float | None) -> int | None:
    """The number of evaluations after which `curve` first reaches `target` (None: never)."""
    if target is None:
        return None
    return next((k + 1 for k, x in enumerate(curve) if x >= target), None)


def evaluations_to_match(test_curves: list[list[float]], target: float | None) -> int | None:
    """Evaluations an algorithm needs to match random search's final result: the first point at
    which its mean (over seeds) incumbent test accuracy reaches random search's mean final test
    accuracy. None: not within the budget (or random search was not run)."""
    if not test_curves:
        return None
    return first_reaching([statistics.fmean(col) for col in zip(*test_curves)], target)


def hypervolume(indices, val: list, params: list, ref: tuple[float, float]) -> float:
    """Hypervolume of (validation error, params) as a fraction of the reference box
    (error 1.0, HV_PARAMS_MARGIN x the largest network of the space)."""
    points = [(1.0 - val[i] / 100, params[i]) for i in indices]
    return pareto.hypervolume(points, ref) / (ref[0] * ref[1])


# -- output ------------------------------------------------------------------------------------

CSV_FIELDS = ("algorithm", "seed", "evaluations", "individuals", "index", "arch", "val12", "test200", "params",
              "hypervolume", "hv_gap", "evals_to_match")


def algorithm_table(result: StudyResult) -> list[dict]:
    """Per algorithm, over its seeds: the returned network's test accuracy (mean, sd, standard
    error, min, max), the hypervolume (mean, sd, standard error, gap of the mean to the space's),
    and the evaluations its mean
    curve needs to match random search's final mean (None: not within the budget, or random
    not run), with how many seeds reach that on their own."""
    table = []
    for a in result.config.algorithms:
        rows = [r for r in result.rows if r["algorithm"] == a]
        tests, hvs = [r["test200"] for r in rows], [r["hypervolume"] for r in rows]
        hv = statistics.fmean(hvs)
        test_sd, hv_sd = (statistics.stdev(x) if len(x) > 1 else 0.0 for x in (tests, hvs))
        table.append({"algorithm": a, "seeds": len(rows), "test_mean": statistics.fmean(tests),
                      "test_sd": test_sd, "test_se": test_sd / math.sqrt(len(tests)), "test_min": min(tests),
                      "test_max": max(tests), "hv_mean": hv, "hv_sd": hv_sd, "hv_se": hv_sd / math.sqrt(len(hvs)),
                      "hv_gap": result.space_hv - hv,
                      "evals_to_match": evaluations_to_match(result.curves[a]["test"], result.target),
                      "seeds_matching": sum(1 for r in rows if r["evals_to_match"] is not None)})
    return table


def paired_table(result: StudyResult) -> list[dict]:
    """Each arm `X+predictor` against `X` on the same seeds: the mean paired difference in test
    accuracy and in hypervolume, its standard error, and the two-sided Wilcoxon signed-rank p
    (stats.wilcoxon_signed_rank; 1.0 when every pair is equal)."""
    table, by_seed = [], {(r["algorithm"], r["seed"]): r for r in result.rows}
    for arm in result.config.algorithms:
        base = arm.removesuffix(PREDICTED)
        if arm == base or base not in result.config.algorithms:
            continue
        seeds = [s for (a, s) in by_seed if a == arm and (base, s) in by_seed]
        row = {"arm": arm, "base": base, "seeds": len(seeds)}
        for name in ("test200", "hypervolume"):
            d = [by_seed[(arm, s)][name] - by_seed[(base, s)][name] for s in seeds]
            p = wilcoxon_signed_rank(d) if any(d) else 1.0
            row.update({f"{name}_diff": statistics.fmean(d), f"{name}_se": _se(d), f"{name}_p": p})
        table.append(row)
    return table


def _se(values: list[float]) -> float:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan


def summary_lines(result: StudyResult) -> list[str]:
    """One line per algorithm, starting with its name; then one per arm with a predictor, against
    the same algorithm without it."""
    width = max(len(a) for a in result.config.algorithms)
    lines = [f"{t['algorithm']:<{width}}  test {t['test_mean']:.2f} ± {t['test_sd']:.2f} (se {t['test_se']:.2f})  "
             f"hv {t['hv_mean']:.4f} (gap {t['hv_gap']:.4f})  {_match_text(result, t)}"
             for t in algorithm_table(result)]
    return lines + [f"{p['arm']} - {p['base']}, paired over {p['seeds']} seeds: test {p['test200_diff']:+.3f} ± "
                    f"{p['test200_se']:.3f} (Wilcoxon p {p['test200_p']:.2g}), hv {p['hypervolume_diff']:+.5f} ± "
                    f"{p['hypervolume_se']:.5f} (p {p['hypervolume_p']:.2g})" for p in paired_table(result)]


def _match_text(result: StudyResult, t: dict) -> str:
    if result.target is None:
        return "to match random: n/a (random not run)"
    k, n = t["evals_to_match"], result.config.seeds
    when = f"{k} evaluations" if k is not None else f"not within {result.config.budget}"
    return f"matches random's {result.target:.2f} after {when} (seeds reaching it: {t['seeds_matching']}/{n})"


def write(result: StudyResult, out: Path) -> dict[str, Path]:
    """The CSV, then the page (skipped with a warning where plotly is missing)."""
    from evo_nas.report import shell, study_page

    out.mkdir(parents=True, exist_ok=True)
    stem = f"{result.config.space}-{result.config.dataset}"
    files = {"csv": out / f"{stem}.csv", "html": out / f"{stem}.html"}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in result.rows)
    atomic_write(files["csv"], buf.getvalue())
    if shell.write(files["html"], lambda: study_page.render_page(result, algorithm_table(result))) is None:
        del files["html"]
    return files
