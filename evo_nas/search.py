"""What an algorithm talks to: individuals, the archive of a search, when to stop, and the
`Search` that puts them together with a way to evaluate.   [no torch, no storage]

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
        per_generation = search.children
        planned = stop.budget if stop.budget is not None else search.population + per_generation * (stop.generations
                                                                                                     or 0)
        return cls(stop.generations, stop.budget, MAX_INDIVIDUALS_FACTOR * max(planned, 1))

    def room(self, archive: Archive) -> float:
        return math.inf if self.budget is None else max(0, self.budget - archive.evaluated)

    def done(self, state: State, archive: Archive) -> bool:
        return self.done_at(state.generation, archive.next_id, archive.evaluated)

    def done_at(self, generation: int, next_id: int, evaluated: int) -> bool:
        """Whether a search with `generation` generations done, `next_id` ids handed out and
        `evaluated` networks trained stops there."""
        if self.generations is not None and generation >= self.generations:
            return True
        if self.budget is not None and self.budget - evaluated <= 0:
            return True
        return next_id >= self.max_individuals

    def progress(self, state: State | None, archive: Archive) -> float:
        parts = []
        if self.generations is not None:
            parts.append((state.generation if state is not None else 0) / max(self.generations, 1))
        if self.budget is not None:
            parts.append(archive.evaluated / self.budget)
        return min(1.0, max(parts)) if parts else 0.0


@dataclass(frozen=True)
class IdPlan:
    """Which (id, generation) pairs a search can have journaled. The Archive hands out ids in
    order of birth; generation 0 takes exactly `population` of them (seeds, then samples) and
    every later generation at most `per_generation` (SearchConfig.children: all bred before any is evaluated). A usable
    snapshot (generation G, next_id N: every id below N is in the journal) adds: generations up
    to G used ids below N, later ones ids from N on, at most per_generation more per generation
    (later snapshots may have been lost: the journal then replays several generations), and
    none at all if the search was done at G. Anything else is not an evaluation of this run."""

    population: int
    per_generation: int
    generations: int | None  # the config's, if it sets one (what config.yaml says now: a resume follows it)
    snapshot: tuple[int, int] | None = None  # (G, N) of the newest usable snapshot
    done: bool = False  # the search stopped at that snapshot

    @classmethod
    def of(cls, settings: SearchConfig, stop: StopConfig, snapshot: tuple[int, int] | None, trained: int) -> IdPlan:
        """The plan of a run with these settings; `trained`: networks trained among the ids
        below the snapshot's next_id (what the budget had counted there)."""
        done = snapshot is not None and Termination.of(stop, settings).done_at(*snapshot, trained)
        generations = stop.generations
        if generations is not None and snapshot is not None:  # config.yaml cut below what was done: done is done
            generations = max(generations, snapshot[0])
        return cls(settings.population, settings.children, generations, snapshot, done)

    def possible(self, ident: int, generation: int) -> bool:
        if ident < 0 or generation < 0 or (self.generations is not None and generation > self.generations):
            return False
        if not (ident < self.population if generation == 0 else
                self.population <= ident < self.population + generation * self.per_generation):
            return False
        if self.snapshot is None:
            return True
        saved, next_id = self.snapshot
        if generation <= saved:
            return ident < next_id
        return not self.done and next_id <= ident < next_id + (generation - saved) * self.per_generation


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
