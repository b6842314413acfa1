"""The variation engine: a DEAP Toolbox per search, where `mate` and `mutate` are registered (and
`select`, by the algorithm) and the loops look them up; DEAP's standard operators on each space's
flat integer encoding, beside the space's own semantic operators.   [deap]

Operator sets (`--operators`): "semantic", the default (the space's own: AmoebaNet's op and
hidden-state mutations, cell swap, layer insertion...), "deap" (tools.cxTwoPoint, tools.cxUniform,
tools.mutUniformInt with per-gene bounds; the layer space adds a variable-length one-point
crossover), "both" (the union, one operator drawn uniformly). A space without a flat encoding
has only its own.

DEAP's operators draw from the `random` module. Here each call draws from the search's own `rng`
instead: its state is lent to the module for the call and taken back (`drawing_from`). So a
search is a function of its seed, the snapshot of its `rng` holds everything it needs to continue
exactly, and nothing else in the process that uses `random` can change it (nor is changed by it).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

from deap import base, tools

from evo_nas.genome import Genome
from evo_nas.spaces.base import Crossover, Mutation, SearchSpace

OPERATOR_SETS = ("deap", "semantic", "both")
# Chosen on the NB201 study, CIFAR-10, tuning seeds 1000-1999 (never the reported 0-99), by the
# mean test accuracy of aging's and NSGA-II's results: 94.133% here; 94.126-94.136% for
# MUT_GENES 0.25-1 with CX_UNIFORM_PB 0.2-0.5 (all within a standard error, ~0.007); 94.12,
# 94.09, 94.05% for MUT_GENES 1.5, 2, 3. (The semantic set: 94.155%.)
CX_UNIFORM_PB = 0.5  # cxUniform: chance that a gene comes from the second parent
MUT_GENES = 0.5  # mutUniformInt: genes redrawn per mutation on average (indpb = MUT_GENES / genes)


def make_toolbox(space: SearchSpace, operators: str, rng: random.Random) -> base.Toolbox:
    """`mate(a, b)` and `mutate(genome)` of a search: each returns (child, operator name), the name
    being the child's provenance in the journal. Both draw from `rng` only."""
    crossovers, mutations = operator_tables(space, operators)
    toolbox = base.Toolbox()
    toolbox.register("mate", space.crossover, rng=rng, ops=crossovers)
    toolbox.register("mutate", space.mutate, rng=rng, ops=mutations)
    return toolbox


def operator_tables(space: SearchSpace, operators: str) -> tuple[dict[str, Crossover], dict[str, Mutation]]:
    """(crossovers, mutations) by name for an operator set."""
    if operators not in OPERATOR_SETS:
        raise ValueError(f"operators: {operators!r} is not one of {OPERATOR_SETS}")
    semantic = (dict(space.crossovers()), space.mutation_table())
    if operators == "semantic" or not space.has_encoding:
        return semantic
    deap = (deap_crossovers(space), deap_mutations(space))
    if operators == "deap":
        return deap
    return {**semantic[0], **deap[0]}, {**semantic[1], **deap[1]}


def deap_crossovers(space: SearchSpace) -> dict[str, Crossover]:
    ops = {"cxTwoPoint": on_genes(space, tools.cxTwoPoint),
           "cxUniform": on_genes(space, partial(tools.cxUniform, indpb=CX_UNIFORM_PB))}
    if space.gene_unit():
        low, high = space.unit_bounds()
        ops["cxMessyOnePoint"] = on_genes(space, partial(cx_messy_one_point, unit=space.gene_unit(), low=low,
                                                          high=high))
    return ops


def deap_mutations(space: SearchSpace) -> dict[str, Mutation]:
    def mut_uniform_int(genome: Genome, rng: random.Random) -> Genome:
        genes = space.encode(genome)
        low, up = space.gene_bounds(len(genes))
        with drawing_from(rng):
            tools.mutUniformInt(genes, low, up, indpb=min(1.0, MUT_GENES / len(genes)))
        return space.decode(genes, genome)

    ops = {"mutUniformInt": mut_uniform_int}
    if space.hparams is not None:
        ops["mut_hparams"] = space.mutation_table()["mut_hparams"]
    return ops


def on_genes(space: SearchSpace, cx: Callable[[list[int], list[int]], object]) -> Crossover:
    """A DEAP crossover as a space crossover: both parents encoded, crossed in place, the first
    child decoded (its hparams and what the genes do not hold from the first parent)."""
    def crossover(a: Genome, b: Genome, rng: random.Random) -> Genome:
        x, y = space.encode(a), space.encode(b)
        with drawing_from(rng):
            cx(x, y)
        return space.decode(x, a)
    return crossover


def cx_messy_one_point(ind1: list, ind2: list, unit: int, low: int, high: int) -> tuple[list, list]:
    """DEAP's cxMessyOnePoint for sequences of units of `unit` genes (whole layers): ind1 keeps
    its first i units and takes ind2's from unit j on, ind2 the reverse. j is drawn among the cuts
    that keep the first child between `low` and `high` units (there always is one when both
    parents are), so the child is a valid depth by construction. In place, as DEAP's."""
    n1, n2 = len(ind1) // unit, len(ind2) // unit
    i = random.randint(0, n1)
    j = random.randint(max(0, n2 + i - high), min(n2, n2 + i - low))
    ind1[i * unit:], ind2[j * unit:] = ind2[j * unit:], ind1[i * unit:]
    return ind1, ind2


@contextmanager
def drawing_from(rng: random.Random) -> Iterator[None]:
    """Inside the block the `random` module draws from `rng`'s stream, which then continues
    after those draws; the module's own state is as it was before."""
    outside = random.getstate()
    random.setstate(rng.getstate())
    try:
        yield
    finally:
        rng.setstate(random.getstate())
        random.setstate(outside)
