"""The flat integer encodings DEAP's operators work on: lossless for every genome of a space,
within their per-gene bounds, and valid by construction (every in-bounds list decodes to a genome
the space accepts)."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evo_nas.genome_io import load_genome
from evo_nas.spaces.cells import CellSpace
from evo_nas.spaces.hparams import HParamSpace
from evo_nas.spaces.layers import LayerSpace
from evo_nas.spaces.nb201 import NB201Space
from tests.conftest import GENOMES

SPACES = [CellSpace(), CellSpace(blocks=2, ops=("sep_conv_3x3", "max_pool_3x3")), NB201Space(),
          NB201Space(ops=("none", "nor_conv_3x3")), LayerSpace(), LayerSpace(min_layers=1, max_layers=4),
          CellSpace(blocks=3, hparams=HParamSpace()), LayerSpace(hparams=HParamSpace())]


def random_genes(space, rng: random.Random) -> list[int]:
    """Any list of integers the bounds allow (of an allowed number of units, if variable)."""
    unit = space.gene_unit()
    length = unit * rng.randint(*space.unit_bounds()) if unit else len(space.encode(space.sample(rng)))
    low, up = space.gene_bounds(length)
    return [rng.randint(a, b) for a, b in zip(low, up)]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(range(len(SPACES))), st.integers(0, 2**31))
def test_decode_inverts_encode_and_genes_stay_in_bounds(index, seed):
    space = SPACES[index]
    genome = space.sample(random.Random(seed))
    genes = space.encode(genome)
    low, up = space.gene_bounds(len(genes))
    assert len(low) == len(up) == len(genes) and all(a <= g <= b for a, g, b in zip(low, genes, up))
    assert space.decode(genes, genome) == genome


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(range(len(SPACES))), st.integers(0, 2**31))
def test_every_list_within_the_bounds_decodes_to_a_valid_genome(index, seed):
    space = SPACES[index]
    rng = random.Random(seed)
    like = space.sample(rng)
    child = space.decode(random_genes(space, rng), like)
    space.validate(child, "decoded")
    assert child.hparams == like.hparams
    assert space.decode(space.encode(child), child) == child  # and it is a fixed point


@pytest.mark.parametrize("name", ["nasnet_a", "amoebanet_a", "darts_v1", "darts_v2"])
def test_published_cells_round_trip_with_their_concat(name):
    genome = load_genome(GENOMES / f"{name}.yaml").anonymous()
    space = CellSpace(blocks=len(genome.normal.blocks))  # DARTS' cells have 4 blocks, NASNet's 5
    space.validate(genome)
    assert space.decode(space.encode(genome), genome) == genome


def test_the_cell_encoding_is_nsga_nets_micro_encoding():
    """[op, input, op, input] per block, the normal cell's blocks first; ops by index in the op set."""
    genome = load_genome(GENOMES / "nasnet_a.yaml")
    space = CellSpace()
    genes = space.encode(genome)
    first = genome.normal.blocks[0]
    assert genes[:4] == [space.ops.index(first.left.op), first.left.input, space.ops.index(first.right.op),
                         first.right.input]
    last = genome.reduce.blocks[-1]
    assert genes[-4:] == [space.ops.index(last.left.op), last.left.input, space.ops.index(last.right.op),
                          last.right.input]
    low, up = space.gene_bounds(len(genes))
    assert len(genes) == 2 * 4 * space.blocks and up[:8] == [8, 1, 8, 1, 8, 2, 8, 2] and set(low) == {0}


def test_the_nb201_encoding_is_one_op_index_per_edge():
    genome = load_genome(GENOMES / "nb201_resnet.yaml")
    space = NB201Space()
    assert [space.ops[g] for g in space.encode(genome)] == list(genome.edges)
    assert space.gene_bounds(6) == ([0] * 6, [4] * 6)


def test_layer_inputs_are_relative_so_a_moved_layer_keeps_reading_its_predecessor():
    space = LayerSpace(min_layers=1, max_layers=4)
    genome = space.sample(random.Random(3))
    unit = space.gene_unit()
    genes = space.encode(genome)
    shifted = genes[:unit] + genes  # the first layer twice: every later layer moves one place down
    child = space.decode(shifted, genome)
    space.validate(child, "shifted")
    for i, (old, new) in enumerate(zip(genome.layers, child.layers[1:])):
        assert (old.height, old.width, old.filters) == (new.height, new.width, new.filters)
        assert (i in old.inputs) == (i + 1 in new.inputs)  # "my predecessor", wherever the layer sits
    assert len(genes) % unit == 0 and unit == 3 + space.max_layers
