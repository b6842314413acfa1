"""A performance predictor that screens children before they train: a scikit-learn ensemble fitted
on the run's own successful evaluations, from what every genome has before training (its space's
flat encoding, its exact params and MACs, zero-cost scores at initialisation), and how well it
ranked each generation (Kendall tau), from which a run decides to stop using it.
[numpy; scikit-learn, imported on the first fit]

The measures of a genome (counts and scores) come from the `measure` callable the run or the
study gives: runner.py computes them with torch in the driver process (evaluate/zero_cost.py),
the NB201 study reads them from the package's tables. This module stays torch-free. The fit is
a function of the journal: the training set is the archive's evaluations (rebuilt from the
journal on resume), the ensemble's random_state a function of the run seed and the generation.
docs/study.md says how the settings were chosen.
"""

from __future__ import annotations

import math
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from evo_nas.genome import OPTIMIZERS, Genome
from evo_nas.search import Individual
from evo_nas.spaces.base import SearchSpace
from evo_nas.stats import kendall_tau

TREES = 32  # ExtraTrees: ~20 ms to fit 150 evaluations on one core; more trees changed nothing measurable
MIN_LEAF = 2  # a leaf holds two evaluations: a single proxy accuracy is too noisy to be a leaf's answer
MIN_EVALUATIONS = 5  # successful evaluations before the first fit
# Fallback (`ranks_badly`): when the children of the latest screened generations, at least
# FALLBACK_GENERATIONS generations and FALLBACK_CHILDREN children, rank no better than chance
# (Kendall tau <= 0 between predicted and measured accuracy), the run breeds without the predictor.
# Chosen on the NB201 study (tuning seeds 1000-1059, budget 150): the predicted best children of a
# brood are a narrow range to rank (aging's within-generation tau +0.27 against +0.55 for children
# drawn at random), so short windows dropped good predictors (aging, 5 children a generation: 36
# of 60 runs at 20 children) while 40 children drop 11 of 60 (4 with exploration 0.25, NSGA-II's 0)
# and still catch a predictor at chance (accuracies shuffled across cells) in 58 of 60 (NSGA-II: all
# that had 40 children to judge).
FALLBACK_GENERATIONS = 3
FALLBACK_CHILDREN = 40
MISSING = -1e9  # a score that could not be taken (NASWOT of a network without ReLUs): below every real one
LOG_SCORES = ("synflow",)  # spanning tens of decades: fitted on log10(1 + score)


@dataclass(frozen=True)
class Measures:
    """What a genome has before it trains: exact counts, and zero-cost scores by name."""

    params: int
    macs: int
    scores: tuple[tuple[str, float], ...] = ()


def features(space: SearchSpace, genome: Genome, m: Measures) -> list[float]:
    """The model's input: the flat encoding (padded to the longest, for variable-length spaces),
    the hyperparameter genes, log10 params and MACs, and the zero-cost scores."""
    out = [float(g) for g in _genes(space, genome)]
    if genome.hparams is not None:
        h = genome.hparams
        out += [math.log10(h.lr), math.log10(h.weight_decay), h.dropout, float(OPTIMIZERS.index(h.optimizer))]
    out += [math.log10(max(m.params, 1)), math.log10(max(m.macs, 1))]
    for name, value in m.scores:
        if not math.isfinite(value):
            out.append(MISSING)
        else:
            out.append(math.log10(1 + max(value, 0.0)) if name in LOG_SCORES else value)
    return out


def _genes(space: SearchSpace, genome: Genome) -> list[int]:
    if not space.has_encoding:
        return []
    genes = space.encode(genome)
    if space.gene_unit():  # variable length: pad to the most units, with a value no gene has
        genes = genes + [-1] * (space.gene_unit() * space.unit_bounds()[1] - len(genes))
    return genes


class Predictor:
    """Fits before each screened generation (`model`), predicts for children (`Model.predict`).
    `measure(genome)` gives a genome's Measures; they are kept per genome (a value), not per
    canonical key: isomorphic genomes may differ in encoding and scores."""

    def __init__(self, space: SearchSpace, seed: int, measure: Callable[[Genome], Measures]):
        self.space, self.seed, self._measure = space, seed, measure
        self._cache: dict[Genome, tuple[Measures, list[float]]] = {}
        self.fell_back: int | None = None  # the generation this process said it stopped using the model

    def measures(self, genome: Genome) -> Measures:
        return self._entry(genome)[0]

    def features(self, genome: Genome) -> list[float]:
        return self._entry(genome)[1]

    def _entry(self, genome: Genome) -> tuple[Measures, list[float]]:
        if genome not in self._cache:
            m = self._measure(genome)
            self._cache[genome] = (m, features(self.space, genome, m))
        return self._cache[genome]

    def model(self, evaluations: Sequence[Individual], generation: int) -> Model | None:
        """The model that screens `generation`'s children, fitted on every successful evaluation so
        far (in id order); None when there are too few, or when the predictor ranked no better than
        chance (`ranks_badly`; said once, as a warning)."""
        bad = ranks_badly(pairs(evaluations))
        if bad is not None:
            if self.fell_back is None:
                self.fell_back = generation
                warnings.warn(f"predictor: its predictions of generations {bad[0]}-{bad[1]} ranked no better than "
                              f"chance (Kendall tau {bad[2]:+.2f} over {bad[3]} children); generation {generation} "
                              f"on breeds as without it", stacklevel=2)
            return None
        ok = sorted((ind for ind in evaluations if ind.ok), key=lambda ind: ind.id)
        if len(ok) < MIN_EVALUATIONS:
            return None
        return Model(self, [ind.genome for ind in ok], [ind.result.accuracy for ind in ok],
                     self.random_state(generation))

    def random_state(self, generation: int) -> int:
        return zlib.crc32(f"predictor:{self.seed}:{generation}".encode()) & 0x7FFFFFFF


class Model:
    """One generation's fitted ensemble. `seconds`: time spent measuring, fitting and predicting,
    so far (what screening costs, against the trainings it saves)."""

    def __init__(self, predictor: Predictor, genomes: list[Genome], accuracies: list[float], random_state: int):
        from sklearn.ensemble import ExtraTreesRegressor

        start = time.perf_counter()
        self.predictor = predictor
        self.ensemble = ExtraTreesRegressor(n_estimators=TREES, min_samples_leaf=MIN_LEAF, random_state=random_state)
        self.ensemble.fit([predictor.features(g) for g in genomes], accuracies)
        self.seconds = time.perf_counter() - start

    def predict(self, genomes: Sequence[Genome]) -> list[float]:
        start = time.perf_counter()
        rows = [self.predictor.features(g) for g in genomes]
        out = [float(x) for x in self.ensemble.predict(rows)] if rows else []
        self.seconds += time.perf_counter() - start
        return out


# -- how well it ranked: from the individuals, or from a journal's records ----------------------

def pairs(items: Iterable) -> dict[int, list[tuple[float, float]]]:
    """generation -> (predicted, measured accuracy) of its screened children that succeeded, from
    individuals or journal records (anything with generation, predicted, ok, and a result)."""
    out: dict[int, list[tuple[float, float]]] = {}
    for item in items:
        if item.predicted is not None and item.ok:
            out.setdefault(item.generation, []).append((item.predicted, item.result.accuracy))
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class PredictorGeneration:
    """How the predictor did on one generation it screened, from the journal."""

    generation: int
    tau: float  # Kendall tau between its predicted and the measured accuracies (nan: under 2 children)
    children: int  # screened children that trained and succeeded
    screen_s: float | None  # seconds of screening (measures, fit, prediction) per child bred
    train_s: float | None  # seconds of training per child trained (their mean wall time)


def generations(records: Iterable) -> tuple[PredictorGeneration, ...]:
    """Per screened generation of `records` (journal records or individuals): the tau, and what
    screening cost per child bred against what training cost per child trained."""
    records = list(records)
    out = []
    for g, (tau, n) in taus(pairs(records)).items():
        members = [r for r in records if r.generation == g and r.predicted is not None]
        screen = [r.screen_s for r in members if r.screen_s is not None]
        walls = [r.wall_time for r in members if r.wall_time]
        out.append(PredictorGeneration(g, tau, n, screen[0] if screen else None,
                                       sum(walls) / len(walls) if walls else None))
    return tuple(out)


def taus(by_generation: dict[int, list[tuple[float, float]]]) -> dict[int, tuple[float, int]]:
    """generation -> (Kendall tau between predicted and measured accuracy, children); nan under 2."""
    return {g: (kendall_tau(*zip(*p)) if len(p) > 1 else math.nan, len(p)) for g, p in by_generation.items()}


def ranks_badly(by_generation: dict[int, list[tuple[float, float]]]) -> tuple[int, int, float, int] | None:
    """(first, last generation, tau, children) when the latest screened generations, at least
    FALLBACK_GENERATIONS of them holding FALLBACK_CHILDREN children, rank no better than chance:
    their mean tau within a generation, weighted by pairs compared, is not above 0. (Within: later
    generations are both predicted and measured higher, which a pooled tau would count as skill.)
    None otherwise, also when there are too few (or one child per generation: no pair to rank).
    Once the run stops screening no generation is added, so the verdict stands, and a resumed run
    reaches it again from the journal."""
    window: list[int] = []
    for g in reversed(by_generation):
        window.insert(0, g)
        children = sum(len(by_generation[k]) for k in window)
        if len(window) >= FALLBACK_GENERATIONS and children >= FALLBACK_CHILDREN:
            tau = within_tau({k: by_generation[k] for k in window})
            return (window[0], window[-1], tau, children) if tau <= 0 else None  # nan: nothing to judge
    return None


def within_tau(by_generation: dict[int, list[tuple[float, float]]]) -> float:
    """Kendall tau within each generation, averaged with weights n(n-1)/2 (nan: no pair anywhere)."""
    weighted = [(len(p) * (len(p) - 1) / 2, kendall_tau(*zip(*p))) for p in by_generation.values() if len(p) > 1]
    weighted = [(w, t) for w, t in weighted if not math.isnan(t)]
    total = sum(w for w, _ in weighted)
    return sum(w * t for w, t in weighted) / total if total else math.nan
