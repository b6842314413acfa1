"""The algorithms on a cheap in-memory problem: NSGA-II against DEAP, aging, dedup, operators."""

import dataclasses
import random

import pytest
from deap import base, creator, tools
from hypothesis import given, settings
from hypothesis import strategies as st

from evo_nas import pareto
from evo_nas.algorithms import ALGORITHMS, fittest
from evo_nas.config import SearchConfig, StopConfig
from evo_nas.errors import ConfigError
from evo_nas.records import Result, Status
from evo_nas.search import Archive, IdPlan, Individual, Search, State, Termination, lookup_evaluator
from evo_nas.spaces.cells import CellSpace
from evo_nas.spaces.hparams import HParamSpace
from evo_nas.spaces.layers import LayerSpace
from evo_nas.spaces.nb201 import EDGES as NB201_EDGES
from evo_nas.spaces.nb201 import NB201Genome, NB201Space

CONV = {"nor_conv_3x3": 2.0, "nor_conv_1x1": 1.0}


def toy_objectives(genome: NB201Genome) -> Result:
    """A cheap stand-in for training: 'accuracy' grows with conv edges into the output, cost
    with every conv; the front trades them off. Deterministic, so runs are comparable."""
    gain = sum(CONV.get(op, 0.0) * (1 + target) for op, (_, target) in zip(genome.edges, NB201_EDGES))
    cost = sum(CONV.get(op, 0.0) ** 2 for op in genome.edges) + 1
    return Result(Status.OK, accuracy=gain / 40.0, macs=cost, params=cost)


def toy_search(seed: int, settings: SearchConfig, budget: int, space=None) -> Search:
    """A Search over NB201 genomes with toy objectives (no training, no storage); its
    `evaluated` lists the results of the distinct networks in order, `checkpoints` the
    generations whose end the callbacks saw."""
    space = space or NB201Space()
    archive = Archive(space)
    evaluated, checkpoints = [], []

    def result_of(ind):
        evaluated.append(toy_objectives(ind.genome))
        return evaluated[-1]

    search = Search(space, settings, random.Random(seed), archive, lookup_evaluator(archive, result_of),
                    Termination.of(StopConfig(budget=budget), settings),
                    callbacks=[lambda state: checkpoints.append(state.generation)])
    search.evaluated, search.checkpoints = evaluated, checkpoints
    return search


def test_selection_is_deaps_selnsga2():
    rng = random.Random(0)
    Fit = type("Fit", (base.Fitness,), {"weights": (-1.0, -1.0, -1.0)})
    for _ in range(30):
        vectors = [tuple(rng.choice([0.1, 0.2, 0.3, rng.random()]) for _ in range(3)) for _ in range(40)]

        class Ind(list):
            pass

        inds = []
        for i, v in enumerate(vectors):
            ind = Ind([i])
            ind.fitness = Fit(v)
            inds.append(ind)
        theirs = sorted(ind[0] for ind in tools.selNSGA2(inds, 15))
        ours = sorted(pareto.select_nsga2(vectors, 15))
        # Ties in crowding may be broken differently; the fronts taken whole must agree.
        fronts = pareto.nondominated_fronts(vectors)
        whole = set()
        for front in fronts:
            if len(whole) + len(front) > 15:
                break
            whole |= set(front)
        assert whole <= set(ours) and whole <= set(theirs)
        assert len(ours) == len(theirs) == 15


def deap_reference(seed: int, population: int, budget: int) -> list[tuple]:
    """Textbook NSGA-II with DEAP's own tools on the same problem and operators."""
    space = NB201Space()
    rng = random.Random(seed)
    random.seed(seed)  # DEAP's selTournamentDCD draws from the global RNG
    if not hasattr(creator, "ToyFit"):
        creator.create("ToyFit", base.Fitness, weights=(1.0, -1.0, -1.0))

    def make(genome):
        ind = [genome]
        ind = type("Ind", (list,), {})(ind)
        r = toy_objectives(genome)
        ind.fitness = creator.ToyFit((r.accuracy, r.macs, r.params))
        return ind

    pop = [make(space.sample(rng)) for _ in range(population)]
    used = population
    seen = [ind.fitness.values for ind in pop]
    pop = tools.selNSGA2(pop, population)
    while used < budget:
        parents = tools.selTournamentDCD(pop, population)
        children = []
        for a, b in zip(parents[::2], parents[1::2]):
            for p, q in ((a, b), (b, a)):
                child, _ = space.crossover(p[0], q[0], rng) if rng.random() < 0.5 else (p[0], "")
                child, _ = space.mutate(child, rng)
                children.append(make(child))
        used += len(children)
        seen += [c.fitness.values for c in children]
        pop = tools.selNSGA2(pop + children, population)
    return [(1 - acc, macs, params) for acc, macs, params in seen]


def front_hypervolume(points) -> float:
    front = [points[i] for i in pareto.first_front(points)]
    return pareto.hypervolume(front, (1.0, 80.0, 80.0))


@pytest.mark.slow
def test_nsga2_matches_a_deap_reference_run():
    def mean_hv(algorithm, seeds=range(30)):
        values = []
        for seed in seeds:
            settings = SearchConfig(algorithm, population=12, objectives=("accuracy", "macs", "params"),
                                    operators="semantic")
            search = toy_search(seed, settings, budget=96)
            ALGORITHMS[algorithm](search)
            values.append(front_hypervolume([pareto.vector(r, search.settings.objectives) for r in search.evaluated]))
        return sum(values) / len(values)

    theirs = sum(front_hypervolume(deap_reference(seed, 12, 96)) for seed in range(30)) / 30
    ours, baseline = mean_hv("nsga2"), mean_hv("random")
    # Same operators and budget: the same quality as DEAP's textbook loop (40 seeds measured:
    # 4212 vs 4212), and both clearly above random search (3929).
    assert ours >= 0.98 * theirs
    assert min(ours, theirs) > 1.03 * baseline


def test_every_algorithm_respects_the_budget_and_never_repeats_a_network():
    for name in ALGORITHMS:
        search = toy_search(1, SearchConfig(name, population=8, sample=3), budget=40)
        state = ALGORITHMS[name](search)
        assert len(search.evaluated) == 40 == search.archive.evaluated
        assert search.archive.next_id == 40  # every individual was a new network: dedup before training
        assert isinstance(state, State) and len(state.population) == 8
        assert search.checkpoints == sorted(search.checkpoints) and search.checkpoints[0] == 0


@pytest.mark.parametrize("stop", [StopConfig(generations=5), StopConfig(budget=25),
                                  StopConfig(generations=9, budget=25)], ids=["generations", "budget", "both"])
@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_the_id_plan_allows_what_a_search_hands_out_and_nothing_past_it(name, stop):
    """IdPlan against a real search: every (id, generation) it evaluated is possible from each
    snapshot it took and from none, and the next id, or an id in a generation it does not
    belong to, is not (what a forged journal line looks like)."""
    settings, space = SearchConfig(name, population=6, sample=3), NB201Space()
    archive, made, snapshots = Archive(space), [], [None]
    evaluate = lookup_evaluator(archive, lambda ind: toy_objectives(ind.genome))
    search = Search(space, settings, random.Random(3), archive,
                    lambda inds: (made.extend((i.id, i.generation) for i in inds), evaluate(inds)),
                    Termination.of(stop, settings),
                    callbacks=[lambda state: snapshots.append((state.generation, archive.next_id, archive.evaluated))])
    ALGORITHMS[name](search)
    for snapshot in snapshots:
        plan = IdPlan.of(settings, stop, snapshot and snapshot[:2], snapshot[2] if snapshot else 0)
        assert all(plan.possible(i, g) for i, g in made), (snapshot, plan)
    last = IdPlan.of(settings, stop, snapshots[-1][:2], snapshots[-1][2])
    generation, next_id = snapshots[-1][:2]
    assert last.done and not any(last.possible(next_id, g) for g in range(generation + 2))
    assert not last.possible(next_id - 1, 0) and not last.possible(0, 1)  # an id of another generation
    cut = IdPlan.of(settings, dataclasses.replace(stop, generations=1), snapshots[-1][:2], snapshots[-1][2])
    assert all(cut.possible(i, g) for i, g in made)  # config.yaml cut below what was done: still this run's


def test_same_seed_same_search():
    def run(seed):
        search = toy_search(seed, SearchConfig("aging", population=8, sample=3), budget=30)
        ALGORITHMS["aging"](search)
        return list(search.evaluated)

    assert run(4) == run(4)
    assert run(4) != run(5)


def test_aging_removes_the_oldest():
    search = toy_search(2, SearchConfig("aging", population=6, offspring=2, sample=3), budget=12)
    state = ALGORITHMS["aging"](search)
    assert [ind.id for ind in state.population] == list(range(6, 12))


SPACES = [CellSpace(blocks=4), LayerSpace(min_layers=2, max_layers=6), NB201Space(),
          CellSpace(blocks=3, hparams=HParamSpace()), LayerSpace(hparams=HParamSpace())]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(range(len(SPACES))), st.integers(0, 2**31), st.lists(st.booleans(), min_size=1, max_size=60))
def test_random_operator_sequences_give_valid_genomes(space_index, seed, steps):
    space = SPACES[space_index]
    rng = random.Random(seed)
    genome, other = space.sample(rng), space.sample(rng)
    for crossover in steps:
        genome, name = space.crossover(genome, other, rng) if crossover else space.mutate(genome, rng)
        space.validate(genome, name)
        if rng.random() < 0.3:
            other = space.sample(rng)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(range(len(SPACES))), st.integers(0, 2**31), st.lists(st.booleans(), min_size=1, max_size=40))
@pytest.mark.slow
def test_every_child_of_random_operator_sequences_builds(space_index, seed, steps):
    """Valid is not enough: every child must become a network, and the last one must run."""
    import torch

    from evo_nas.build import Skeleton, build

    space = SPACES[space_index]
    skeleton = Skeleton(input_shape=(1, 16, 16), classes=10, init_channels=4, depth=3)
    rng = random.Random(seed)
    genome, other = space.sample(rng), space.sample(rng)
    for crossover in steps:
        genome, _ = space.crossover(genome, other, rng) if crossover else space.mutate(genome, rng)
        model = build(genome, skeleton)
    model.train()
    out = model(torch.randn(2, 1, 16, 16))
    out.sum().backward()
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def scored(i: int, accuracy: float, macs: float) -> Individual:
    return Individual(i, None, str(i), 0, result=Result(Status.OK, accuracy=accuracy, macs=macs, params=macs))


def test_with_a_tie_width_near_ties_in_accuracy_go_to_the_cheaper_candidate():
    sample = [scored(0, 0.800, 100), scored(1, 0.795, 50), scored(2, 0.700, 10)]
    exact = SearchConfig("aging", population=4, sample=3)
    assert fittest(sample, exact).id == 0
    assert fittest(sample, dataclasses.replace(exact, tie_width=0.01)).id == 1  # 0.5 points apart: a tie, half the MACs
    assert fittest(sample, dataclasses.replace(exact, tie_width=0.2)).id == 2
    over = SearchConfig("aging", population=4, sample=3, max_macs=40, tie_width=0.2)  # all infeasible but one
    assert fittest(sample, over).id == 2


def test_nsga2_counts_accuracy_in_boxes_of_the_tie_width():
    a, b = Result(Status.OK, accuracy=0.759, macs=100, params=1), Result(Status.OK, accuracy=0.751, macs=50, params=1)
    exact = [pareto.vector(r, ("accuracy", "macs")) for r in (a, b)]
    assert pareto.nondominated_fronts(exact) == [[0, 1]]  # a trade-off
    boxed = [pareto.vector(r, ("accuracy", "macs"), tie_width=0.01) for r in (a, b)]
    assert boxed[0][0] == boxed[1][0] and pareto.nondominated_fronts(boxed) == [[1], [0]]  # one box: b is cheaper
    assert pareto.vector(Result(Status.OK, accuracy=0.76, macs=1, params=1), ("accuracy",), tie_width=0.01)[0] \
        == pytest.approx(0.24)  # a box edge belongs to the box above


@pytest.mark.parametrize("width", [-0.1, 1.0])
def test_a_tie_width_outside_0_to_1_is_an_error(width):
    with pytest.raises(ConfigError, match="tie_width: must be at least 0 and below 1"):
        SearchConfig(tie_width=width)


def test_a_config_file_of_an_earlier_evonas_with_noise_still_reads_as_the_tie_width():
    from evo_nas import config as configs

    assert configs.from_mapping({"noise": 0.02}).search.tie_width == 0.02
    old = {**configs.results_part(configs.from_mapping({})), "noise": 0.0}
    old.pop("tie_width")
    assert configs.resume_changes(old, configs.from_mapping({})) == []
