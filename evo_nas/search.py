"""What an algorithm talks to: individuals, the archive of a search, when to stop, and the
`Search` that puts them together with a way to evaluate.   [stdlib; no torch, no storage]

The roles are apart, as in pymoo: the space says *what* (sample, mutate, cross, key), the
algorithm *how* (algorithms.py), the Termination *when to stop*, and `Search.evaluate` *who
evaluates* (the runner's backend and journal, the study's table, a test's toy function). The
Archive, written once, hands out ids and keeps canonical-key dedup and the cache for all of them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from evo_nas.config import SearchConfig, StopConfig
from evo_nas.genome import Genome
from evo_nas.records import Result, Status
from evo_nas.spaces.base import SearchSpace

MAX_INDIVIDUALS_FACTOR = 20  # stop if dedup keeps finding only known networks (space exhausted)


@dataclass
class Individual:
    id: int
    genome: Genome
    key: str
    generation: int
    parents: tuple[int, ...] = ()
    operator: str = "init"
    result: Result | None = None  # the evaluation's result, once it has one
    predicted: float | None = None  # the predictor's accuracy for it, when it was screened (predictor.py)
    screen_s: float | None = None  # seconds its generation's screening took per child bred

    @property
    def ok(self) -> bool:
        return self.result is not None and self.result.ok


class Child(NamedTuple):
    """A child bred but not yet born: no id until it is chosen to train (`Search.born`)."""

    genome: Genome
    key: str
    parents: tuple[int, ...]
    operator: str


@dataclass
class State:
    generation: int  # generations completed; the initial population is generation 0
    population: list[Individual] = field(default_factory=list)


class Archive:
    """Every individual of a search: ids in order of birth, each network's canonical key, and
    the result of each network's first evaluation (the cache that dedup serves from)."""

    def __init__(self, space: SearchSpace, next_id: int = 0):
        self.space = space
        self.next_id = next_id
        self.seen: set[str] = set()  # keys of every individual so far
        self.cache: dict[str, Result] = {}  # key -> result of its first evaluation
        self.evaluated = 0  # networks trained (infeasible ones are free): what a budget counts
        self.evaluations: list[Individual] = []  # the first individual of each network, with its result: what
        # a predictor learns from (runner._restored_archive rebuilds it from the journal)

    def new(self, genome: Genome, parents: tuple[int, ...], operator: str, generation: int) -> Individual:
        ind = Individual(self.next_id, genome, self.space.key(genome), generation, tuple(parents), operator)
        self.next_id += 1
        self.seen.add(ind.key)
        return ind

    def is_novel(self, key: str) -> bool:
        return key not in self.seen

    def remember(self, ind: Individual, fresh: bool) -> None:
        """Account for an individual that has its result: the first of its network (`fresh`)
        fills the cache and counts against the budget."""
        self.seen.add(ind.key)
        if fresh:
            self.evaluations.append(ind)
            self.cache.setdefault(ind.key, ind.result)
            self.evaluated += ind.result.status is not Status.INFEASIBLE

    def split(self, individuals: Sequence[Individual]) -> tuple[list[Individual], list[Individual], list[Individual]]:
        """(cached, fresh, twins): networks with a result already; the first individual of each
        new network; later individuals of a network that is new in this batch."""
        cached, fresh, twins, keys = [], [], [], set()
        for ind in individuals:
            if ind.key in self.cache:
                cached.append(ind)
            elif ind.key in keys:
                twins.append(ind)
            else:
                keys.add(ind.key)
                fresh.append(ind)
        return cached, fresh, twins


@dataclass(frozen=True)
class Termination:
    """When to stop: after `generations`, or once `budget` networks were trained, or when the
    space seems exhausted (`max_individuals` born). Progress is a fraction in [0, 1]."""

    generations: int | None = None
    budget: int | None = None
    max_individuals: int = 1 << 62

    @classmethod
    def of(cls, stop: StopConfig, search: SearchConfig) -> Termination:
        per_generation = search.offspring or search.population
        planned = stop.budget if stop.budget is not None else search.population + per_generation * (stop.generations
                                                                                                     or 0)
        return cls(stop.generations, stop.budget, MAX_INDIVIDUALS_FACTOR * max(planned, 1))

    def room(self, archive: Archive) -> float:
        return math.inf if self.budget is None else max(0, self.budget - archive.evaluated)

    def done(self, state: State, archive: Archive) -> bool:
        if self.generations is not None and state.generation >= self.generations:
            return True
        if self.budget is not None and self.room(archive) <= 0:
            return True
        return archive.next_id >= self.max_individuals

    def progress(self, state: State | None, archive: Archive) -> float:
        parts = []
        if self.generations is not None:
            parts.append((state.generation if state is not None else 0) / max(self.generations, 1))
        if self.budget is not None:
            parts.append(archive.evaluated / self.budget)
        return min(1.0, max(parts)) if parts else 0.0


@dataclass
class Search:
    """Everything an algorithm uses. `evaluate(individuals)` gives each one its result (the
    one place evaluations happen); `callbacks` run after each generation (checkpoint, report,
    progress)."""

    space: SearchSpace
    settings: SearchConfig
    rng: random.Random
    archive: Archive
    evaluate: Callable[[list[Individual]], None]
    termination: Termination
    seeds: list[Genome] = field(default_factory=list)
    callbacks: list[Callable[[State], None]] = field(default_factory=list)
    toolbox: Any = None  # the DEAP toolbox (mate, mutate, select); algorithms.toolbox makes it on first use
    predictor: Any = None  # a predictor.Predictor when `settings.predictor`: screens children before they train

    def new(self, genome: Genome, parents: tuple[int, ...], operator: str, generation: int) -> Individual:
        return self.archive.new(genome, parents, operator, generation)

    def born(self, child: Child, generation: int) -> Individual:
        return self.archive.new(child.genome, child.parents, child.operator, generation)

    def done(self, state: State) -> bool:
        return self.termination.done(state, self.archive)

    def room(self) -> float:
        return self.termination.room(self.archive)

    def generation_done(self, state: State) -> None:
        for callback in self.callbacks:
            callback(state)


def lookup_evaluator(archive: Archive, result_of: Callable[[Individual], Result]) -> Callable:
    """`Search.evaluate` for evaluations that are a function call (a table, a toy problem):
    dedup through the archive, `result_of` for each new network."""
    def evaluate(individuals: list[Individual]) -> None:
        cached, fresh, twins = archive.split(individuals)
        for ind in fresh:
            ind.result = result_of(ind)
            archive.remember(ind, fresh=True)
        for ind in cached + twins:
            ind.result = archive.cache[ind.key]
            archive.remember(ind, fresh=False)
    return evaluate
