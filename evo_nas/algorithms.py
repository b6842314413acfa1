"""Search algorithms as short explicit loops: NSGA-II, aging evolution, random search.   [deap; no torch]

An algorithm never trains, stores or counts anything itself. It talks to a `search.Search`:
`search.evaluate(individuals)` is the one map-like place where evaluations happen (dedup,
journal and backends sit behind it), `search.new(...)` turns a genome into an individual with an
id (children are first `conceive`d without one; with `--predictor`, `screen` picks those that
are born and train, from a brood `predictor_ratio` times larger), `search.done(state)` says
when to stop and `search.generation_done(state)` runs the callbacks (checkpoint, report,
progress). Variation goes through the search's DEAP toolbox, as in DEAP's own algorithms:
`select` picks parents, `mate` and `mutate` make children (variation.py). Calling an algorithm
with a state restored from a snapshot continues the run exactly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

from deap import base

from evo_nas import pareto, variation
from evo_nas.config import SearchConfig
from evo_nas.genome import Genome
from evo_nas.records import Result, Status
from evo_nas.search import Child, Individual, Search, State

# -- the algorithms -------------------------------------------------------------------------

def nsga2(search: Search, state: State | None = None) -> State:
    """Generational NSGA-II (Deb et al. 2002) over `settings.objectives`."""
    s, tb = search.settings, toolbox(search)
    state = state or initial_population(search)
    while not search.done(state):
        n, model = _children(search), predictor_model(search, state.generation + 1)
        pool: list[Child] = []
        for _ in range(brood(search, n, model)):
            a, b = tb.select(state.population, 2)
            pool.append(conceive(search, lambda a=a, b=b: _cross_then_mutate(search, a, b), pool))
        offspring = screen(search, pool, n, model, state.generation + 1)
        search.evaluate(offspring)
        state = _survivors(state, offspring, s)
        search.generation_done(state)
    return state


def aging(search: Search, state: State | None = None) -> State:
    """Regularized evolution (Real et al. 2019): tournament of S picks a parent to mutate,
    each child replaces the oldest member. The population is kept in age order."""
    tb = toolbox(search)
    state = state or initial_population(search)
    while not search.done(state):
        n, model = _children(search), predictor_model(search, state.generation + 1)
        pool: list[Child] = []
        for _ in range(brood(search, n, model)):
            parent, = tb.select(state.population, 1)
            pool.append(conceive(search, _mutant(search, parent), pool))
        children = screen(search, pool, n, model, state.generation + 1)
        search.evaluate(children)
        state = State(state.generation + 1, (state.population + children)[len(children):])
        search.generation_done(state)
    return state


def random_search(search: Search, state: State | None = None) -> State:
    """Random samples at the same budget: the honest baseline. `population` keeps the
    whole history's front, so the reports compare like with like."""
    s = search.settings
    state = state or initial_population(search)
    while not search.done(state):
        batch: list[Individual] = []
        for _ in range(_children(search)):
            batch.append(breed(search, lambda: (search.space.sample(search.rng), (), "random"),
                               state.generation + 1, batch))
        search.evaluate(batch)
        state = _survivors(state, batch, s)
        search.generation_done(state)
    return state


ALGORITHMS: dict[str, Callable[..., State]] = {"nsga2": nsga2, "aging": aging, "random": random_search}


# -- the toolbox and the selections -----------------------------------------------------------

def toolbox(search: Search) -> base.Toolbox:
    """The search's DEAP toolbox, made on first use: `mate` and `mutate` of its operator set,
    `select` of its algorithm (NSGA-II's crowded tournament, aging's tournament of S)."""
    if search.toolbox is None:
        s = search.settings
        tb = variation.make_toolbox(search.space, s.operators, search.rng)
        if s.algorithm == "nsga2":
            tb.register("select", sel_crowded_tournament, rng=search.rng, objectives=s.objectives,
                        tie_width=s.tie_width)
        elif s.algorithm == "aging":
            tb.register("select", sel_tournament, rng=search.rng, size=s.sample, settings=s)
        search.toolbox = tb
    return search.toolbox


def sel_crowded_tournament(population: list[Individual], k: int, rng: random.Random,
                           objectives: Sequence[str], tie_width: float = 0.0) -> list[Individual]:
    """NSGA-II's mating selection: k binary tournaments, lower front first, then larger crowding."""
    rank, dist = pareto.rank_and_crowding(vectors(population, objectives, tie_width))
    return [_crowded_tournament(population, rank, dist, rng) for _ in range(k)]


def sel_tournament(population: list[Individual], k: int, rng: random.Random, size: int,
                   settings: SearchConfig) -> list[Individual]:
    """Aging's selection: k tournaments, each won by the fittest of `size` members drawn without
    replacement (`fittest`)."""
    return [fittest(rng.sample(population, min(size, len(population))), settings) for _ in range(k)]


def fittest(sample: Sequence[Individual], s: SearchConfig) -> Individual:
    """The member of highest fitness. With a tie width, accuracies within it of the best are
    not told apart: of those, the cheapest wins (the search's other objectives, in order), then
    the more accurate."""
    best = max(sample, key=lambda ind: fitness(ind, s))
    if s.tie_width == 0 or fitness(best, s) < 0:  # exact, or nothing feasible: excess decides
        return best
    near = [ind for ind in sample if fitness(ind, s) >= fitness(best, s) - s.tie_width]
    costs = [name for name in s.objectives if name != "accuracy"]
    return min(near, key=lambda ind: (*(getattr(ind.result, name) for name in costs), -fitness(ind, s)))


# -- shared steps ---------------------------------------------------------------------------

def initial_population(search: Search) -> State:
    """Seed genomes first, then random samples, all distinct; evaluated as generation 0."""
    population: list[Individual] = []
    for genome in search.seeds[: search.settings.population]:
        population.append(search.new(genome, (), f"seed:{genome.name or 'genome'}", 0))
    while len(population) < search.settings.population:
        population.append(breed(search, lambda: (search.space.sample(search.rng), (), "init"), 0, population))
    search.evaluate(population)
    state = State(0, population)
    search.generation_done(state)
    return state


def breed(search: Search, make: Callable[[], tuple[Genome, tuple[int, ...], str]], generation: int,
          batch: Sequence[Individual]) -> Individual:
    """A child from `make` (`conceive`), born at once: it has an id."""
    return search.born(conceive(search, make, batch), generation)


def conceive(search: Search, make: Callable[[], tuple[Genome, tuple[int, ...], str]],
             batch: Sequence[Individual | Child]) -> Child:
    """A child from `make`, retried until it is new to the run and to this batch (dedup
    happens before training, not after). If the space is exhausted the last child is kept;
    its evaluation is then served from the record of its twin."""
    taken = {ind.key for ind in batch}
    for _ in range(search.settings.retries):
        genome, parents, operator = make()
        key = search.space.key(genome)
        if key not in taken and search.archive.is_novel(key):
            break
    return Child(genome, key, parents, operator)


# -- screening with the predictor (predictor.py) ----------------------------------------------

def predictor_model(search: Search, generation: int):
    """The predictor's model for `generation`, refitted on every result so far; None without a
    predictor, before it has enough results, or once it ranked no better than chance."""
    return None if search.predictor is None else search.predictor.model(search.archive.evaluations, generation)


def brood(search: Search, n: int, model) -> int:
    """How many children to breed for n to train: predictor_ratio times n when screening."""
    return n if model is None else max(n, math.ceil(n * search.settings.predictor_ratio))


def screen(search: Search, pool: list[Child], n: int, model, generation: int) -> list[Individual]:
    """The children that train, with ids (given in breeding order): the whole pool without a
    model; with one, n by predicted accuracy. Aging: the predicted best, each place taken instead,
    with chance `predictor_explore`, by a child drawn at random. NSGA-II: NSGA-II's selection over
    (predicted accuracy, the exact costs among its objectives): the predicted non-dominated set,
    spread by crowding. Each chosen child carries its prediction into the journal."""
    if model is None:
        return [search.born(child, generation) for child in pool]
    s = search.settings
    predicted = model.predict([child.genome for child in pool])
    results = [_predicted_result(a, search.predictor.measures(child.genome), s) for a, child in zip(predicted, pool)]
    if s.algorithm == "aging":
        picks = _best_or_random(results, n, search.rng, s.predictor_explore)
    else:
        picks = pareto.select_nsga2([pareto.vector(r, s.objectives, s.tie_width) for r in results], n)
    seconds, children = round(model.seconds / len(pool), 6), []
    for i in sorted(picks):
        children.append(search.born(pool[i], generation))
        children[-1].predicted, children[-1].screen_s = predicted[i], seconds
    return children


def _predicted_result(accuracy: float, m, s: SearchConfig) -> Result:
    """What the predictor expects a child's evaluation to give; over a MAC or parameter limit it
    would be infeasible (worst in every selection)."""
    over = any(limit and value > limit for value, limit in ((m.macs, s.max_macs), (m.params, s.max_params)))
    return Result(Status.INFEASIBLE if over else Status.OK, accuracy=accuracy, macs=m.macs, params=m.params)


def _best_or_random(results: list[Result], n: int, rng: random.Random, explore: float) -> list[int]:
    """n indices: each place the predicted most accurate left, or with chance `explore` a random one."""
    left = sorted(range(len(results)), key=lambda i: (pareto.vector(results[i], ("accuracy",))[0], i))
    picks = []
    for _ in range(min(n, len(left))):
        picks.append(left.pop(rng.randrange(len(left)) if rng.random() < explore else 0))
    return picks


def _mutate(search: Search, parent: Individual) -> tuple[Genome, tuple[int, ...], str]:
    child, op = toolbox(search).mutate(parent.genome)
    return child, (parent.id,), op


def _mutant(search: Search, parent: Individual) -> Callable[[], tuple[Genome, tuple[int, ...], str]]:
    """`make` for `breed`: a mutation of `parent`. Once half the retries have found only known
    networks, the parent's neighbourhood is most likely all evaluated (a strong parent wins
    many tournaments): each further try then mutates the previous try, a walk away from the
    parent that stops at the first new network, instead of a duplicate that brings no
    information and, with a large tournament, keeps the same parent winning."""
    tries, last = 0, parent.genome

    def make() -> tuple[Genome, tuple[int, ...], str]:
        nonlocal tries, last
        tries += 1
        start = parent.genome if tries <= search.settings.retries // 2 else last
        last, op = toolbox(search).mutate(start)
        return last, (parent.id,), op

    return make


def _cross_then_mutate(search: Search, a: Individual, b: Individual) -> tuple[Genome, tuple[int, ...], str]:
    if a.id != b.id and search.rng.random() < search.settings.crossover:
        tb = toolbox(search)
        child, cx = tb.mate(a.genome, b.genome)
        child, mut = tb.mutate(child)
        return child, (a.id, b.id), f"{cx}+{mut}"
    return _mutate(search, a)


def _crowded_tournament(population: list[Individual], rank: list[int], dist: list[float],
                        rng: random.Random) -> Individual:
    """Binary tournament: lower front wins, then larger crowding distance."""
    i, j = rng.randrange(len(population)), rng.randrange(len(population))
    better = min((i, j), key=lambda k: (rank[k], -dist[k], k))
    return population[better]


def _survivors(state: State, children: list[Individual], s: SearchConfig) -> State:
    """The next generation: NSGA-II's selection over parents and children together."""
    pool = state.population + children
    chosen = pareto.select_nsga2(vectors(pool, s.objectives, s.tie_width), s.population)
    return State(state.generation + 1, [pool[i] for i in sorted(chosen)])


def _children(search: Search) -> int:
    """This generation's children: the settings' number, less where the budget has less room."""
    room, wanted = search.room(), search.settings.children
    return int(min(wanted, room)) if math.isfinite(room) else wanted


def vectors(population: Sequence[Individual], objectives: Sequence[str], tie_width: float = 0.0) -> list[pareto.Vector]:
    return [pareto.vector(ind.result, objectives, tie_width) for ind in population]


def fitness(ind: Individual, s: SearchConfig) -> float:
    """Aging's single objective: validation accuracy. A candidate over a MAC or parameter
    limit scores minus its relative excess (below every feasible one, closer is better);
    a failed one scores -inf."""
    if not ind.ok:
        return -math.inf
    r = ind.result
    excess = sum(max(0.0, getattr(r, name) / limit - 1.0)
                 for name, limit in (("macs", s.max_macs), ("params", s.max_params)) if limit)
    return r.accuracy if excess == 0 else -excess
