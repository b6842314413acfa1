"""DEAP as the variation engine: the toolbox and its operator sets, children valid by construction
(property tests over the encodings: decode, validate and build every child), DEAP's draws taken
from the search's own rng, and whole runs with DEAP's operators: same seed, same journal; stopped
and resumed, the same journal as uninterrupted."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evo_nas import variation
from evo_nas.algorithms import ALGORITHMS, toolbox
from evo_nas.cli import main
from evo_nas.config import SearchConfig
from evo_nas.spaces.cells import CellSpace
from evo_nas.spaces.hparams import HParamSpace
from evo_nas.spaces.layers import LayerSpace
from evo_nas.spaces.nb201 import NB201Space
from tests.chain_space import ChainSpace
from tests.journal import without_timings
from tests.test_algorithms import toy_search

SPACES = [CellSpace(blocks=3), LayerSpace(min_layers=2, max_layers=6), NB201Space(),
          CellSpace(blocks=2, hparams=HParamSpace()), LayerSpace(min_layers=1, max_layers=4, hparams=HParamSpace())]


def children(space, operators: str, seed: int, steps: list[bool]):
    """Each child of a sequence of the set's crossovers (True) and mutations (False), with its
    operator's name; the other parent is resampled now and then."""
    rng = random.Random(seed)
    tb = variation.make_toolbox(space, operators, rng)
    genome, other = space.sample(rng), space.sample(rng)
    for crossover in steps:
        genome, name = tb.mate(genome, other) if crossover else tb.mutate(genome)
        yield genome, name
        if rng.random() < 0.3:
            other = space.sample(rng)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(range(len(SPACES))), st.sampled_from(["deap", "both"]), st.integers(0, 2**31),
       st.lists(st.booleans(), min_size=1, max_size=60))
def test_deap_operators_give_valid_genomes_by_construction(index, operators, seed, steps):
    space = SPACES[index]
    for child, name in children(space, operators, seed, steps):
        space.validate(child, name)
        assert space.decode(space.encode(child), child) == child


@settings(max_examples=10, deadline=None)
@given(st.sampled_from(range(len(SPACES))), st.integers(0, 2**31), st.lists(st.booleans(), min_size=1, max_size=20))
@pytest.mark.slow
def test_every_child_of_deap_operators_builds_and_the_last_one_runs(index, seed, steps):
    import torch

    from evo_nas.build import Skeleton, build

    skeleton = Skeleton(input_shape=(1, 16, 16), classes=10, init_channels=4, depth=3)
    for child, _ in children(SPACES[index], "deap", seed, steps):
        model = build(child, skeleton)
    out = model(torch.randn(2, 1, 16, 16))
    out.sum().backward()
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_the_messy_crossover_keeps_the_first_childs_length_within_bounds(data):
    low = data.draw(st.integers(1, 6))
    high = data.draw(st.integers(low, low + 6))
    n1, n2, unit = data.draw(st.integers(low, high)), data.draw(st.integers(low, high)), data.draw(st.integers(1, 5))
    a, b = [1] * (n1 * unit), [2] * (n2 * unit)
    random.seed(data.draw(st.integers(0, 2**31)))
    child, rest = variation.cx_messy_one_point(list(a), list(b), unit, low, high)
    assert low <= len(child) // unit <= high and len(child) % unit == 0
    assert sorted(child + rest) == sorted(a + b)  # genes are exchanged, never made up
    assert child == [1] * child.count(1) + [2] * child.count(2)  # a head of the first, a tail of the second


def test_operator_sets_name_their_operators():
    space = LayerSpace(hparams=HParamSpace())
    semantic = variation.operator_tables(space, "semantic")
    deap = variation.operator_tables(space, "deap")
    both = variation.operator_tables(space, "both")
    assert set(semantic[0]) == set(space.crossovers()) and set(semantic[1]) == set(space.mutation_table())
    assert set(deap[0]) == {"cxTwoPoint", "cxUniform", "cxMessyOnePoint"}
    assert set(deap[1]) == {"mutUniformInt", "mut_hparams"}
    assert set(both[0]) == set(semantic[0]) | set(deap[0]) and set(both[1]) == set(semantic[1]) | set(deap[1])
    assert set(variation.operator_tables(NB201Space(), "deap")[0]) == {"cxTwoPoint", "cxUniform"}
    # A space without a flat encoding (a user's own) has its own operators in every set.
    chain = ChainSpace()
    crossovers, mutations = variation.operator_tables(chain, "deap")
    assert not chain.has_encoding and (set(crossovers), set(mutations)) == ({"cx_uniform"}, {"mut_width"})


def recorded(search):
    """`search`, keeping every individual it evaluates in `search.seen`."""
    evaluate, search.seen = search.evaluate, []
    search.evaluate = lambda individuals: (search.seen.extend(individuals), evaluate(individuals))[-1]
    return search


def test_the_search_looks_operators_up_in_its_toolbox():
    search = recorded(toy_search(0, SearchConfig("nsga2", population=8, operators="deap"), budget=24))
    tb = toolbox(search)
    assert toolbox(search) is tb and {"mate", "mutate", "select"} <= set(vars(tb))
    ALGORITHMS["nsga2"](search)
    made = [ind.operator for ind in search.seen if ind.generation > 0]
    assert len(made) == 16 and all(op.split("+")[0] in ("cxTwoPoint", "cxUniform", "mutUniformInt") for op in made)


def test_drawing_from_lends_the_rng_to_deap_and_leaves_the_module_alone():
    random.seed(1)
    outside = random.getstate()
    rng, twin = random.Random(5), random.Random(5)
    with variation.drawing_from(rng):
        drawn = [random.random() for _ in range(3)]
    assert drawn == [twin.random() for _ in range(3)]  # DEAP's draws came from rng's stream
    assert rng.random() == twin.random()  # which continues after them
    assert random.getstate() == outside  # the module's own stream is untouched


@pytest.mark.parametrize("operators", ["deap", "both"])
@pytest.mark.parametrize("algorithm", ["nsga2", "aging"])
def test_a_search_is_a_function_of_its_seed_whatever_else_uses_random(algorithm, operators):
    """Other users of the `random` module (between generations, or a test runner's seeding) do not
    change what DEAP's operators draw."""
    def run(seed, meddle):
        search = recorded(toy_search(seed, SearchConfig(algorithm, population=8, sample=3, operators=operators),
                                     budget=40))
        if meddle:
            search.callbacks.append(lambda state: random.seed(state.generation * 7919))
        ALGORITHMS[algorithm](search)
        return [(ind.id, ind.key, ind.operator) for ind in search.seen]

    random.seed(123)
    first = run(4, meddle=False)
    random.seed(456)
    assert run(4, meddle=True) == first
    assert run(5, meddle=False) != first


# -- whole runs -------------------------------------------------------------------------------

TINY = ["--space", "nb201", "--init-channels", "4", "--depth", "1", "--train-limit", "96", "--val-limit", "64",
        "--bn-recalibration", "64", "--batch-size", "32", "--population", "4", "--no-report", "--operators", "deap"]


@pytest.mark.slow
def test_runs_with_deap_operators_repeat_and_resume_exactly(tmp_path):
    def run(name, generations, *more):
        assert main(["run", *TINY, "--runs-dir", str(tmp_path), "--name", name, "--generations", str(generations),
                     *more]) == 0
        return tmp_path / name

    full = without_timings(run("full", 3))
    assert len(full) == 16 and any(r["operator"].split("+")[0] in ("cxTwoPoint", "cxUniform") for r in full)
    assert all(r["operator"] == "init" or "mutUniformInt" in r["operator"] for r in full)
    random.seed(99)  # another state of the module between the runs changes nothing
    assert without_timings(run("again", 3)) == full
    part = run("part", 1)
    random.seed(7)
    assert main(["resume", str(part), "--generations", "3"]) == 0
    assert without_timings(part) == full
