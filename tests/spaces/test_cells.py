"""Cell space: canonical keys against brute force, operators keep genomes valid."""

import itertools
import random
from dataclasses import replace

from evo_nas.genome_io import load_genome
from evo_nas.spaces.cells import Block, Cell, CellGenome, CellSpace, cell_key, live_states

SPACE = CellSpace(blocks=4, ops=("sep_conv_3x3", "skip_connect", "max_pool_3x3"))


def renumbered(cell: Cell, rng: random.Random) -> Cell:
    """The same cell with its blocks in another valid order and branches swapped at random."""
    n = len(cell.blocks)
    while True:
        perm = list(range(n))
        rng.shuffle(perm)  # perm[new position] = old block
        new_state = {0: 0, 1: 1, **{old + 2: pos + 2 for pos, old in enumerate(perm)}}
        if all(new_state[b.input] < pos + 2 for pos, old in enumerate(perm) for b in cell.blocks[old].branches):
            break
    blocks = []
    for old in perm:
        left, right = (replace(b, input=new_state[b.input]) for b in cell.blocks[old].branches)
        blocks.append(Block(right, left) if rng.random() < 0.5 else Block(left, right))
    concat = None if cell.concat is None else tuple(new_state[s] for s in reversed(cell.concat))
    return Cell(tuple(blocks), concat)


def brute(cell: Cell) -> tuple:
    """Smallest description over all block renumberings, dead blocks removed."""
    live = sorted(s for s in live_states(cell) if s >= 2)
    outputs = set(cell.output_states())
    best = None
    for perm in itertools.permutations(range(len(live))):
        new = {0: 0, 1: 1, **{s: 2 + p for s, p in zip(live, perm)}}
        blocks = tuple(sorted((new[s], new[s] in {new[o] for o in outputs},
                               tuple(sorted((b.op, new[b.input]) for b in cell.blocks[s - 2].branches)))
                              for s in live))
        best = blocks if best is None or blocks < best else best
    return best


def test_renumbered_cells_share_a_key():
    rng = random.Random(0)
    for _ in range(300):
        cell = SPACE.sample(rng).normal
        if rng.random() < 0.5:
            cell = Cell(cell.blocks, tuple(sorted(rng.sample(range(2, 6), rng.randint(1, 4)))))
        assert cell_key(renumbered(cell, rng)) == cell_key(cell)


def test_keys_agree_with_brute_force():
    rng = random.Random(1)
    keys, forms = {}, {}
    for _ in range(600):
        cell = SPACE.sample(rng).normal
        if rng.random() < 0.3:
            cell = Cell(cell.blocks, tuple(sorted(rng.sample(range(2, 6), rng.randint(1, 3)))))
        keys.setdefault(cell_key(cell), set()).add(brute(cell))
        forms.setdefault(brute(cell), set()).add(cell_key(cell))
    assert all(len(v) == 1 for v in keys.values())
    assert all(len(v) == 1 for v in forms.values())


def test_dead_blocks_and_the_default_concat_rule(genomes_dir):
    darts = load_genome(genomes_dir / "darts_v2.yaml")
    space = CellSpace(blocks=4)
    # The NASNet rule and an explicit list that names the same states are one network.
    implicit = replace(darts, normal=Cell(darts.normal.blocks, None))
    explicit = replace(darts, normal=Cell(darts.normal.blocks, implicit.normal.output_states()))
    assert implicit.normal.output_states() == (3, 4, 5)  # state 2 feeds block 3
    assert space.key(implicit) == space.key(explicit)
    assert space.key(implicit) != space.key(darts)  # DARTS also concatenates state 2
    # A block that reaches nothing can change freely without changing the network.
    cell = Cell(darts.normal.blocks, (2, 3, 4))  # block 3 (state 5) is dead
    other = Cell(darts.normal.blocks[:3] + (Block(*reversed(darts.normal.blocks[0].branches)),), (2, 3, 4))
    assert cell_key(cell) == cell_key(other)
    assert cell_key(cell) != cell_key(darts.normal)


def test_normal_and_reduce_are_not_interchangeable():
    g = SPACE.sample(random.Random(5))
    swapped = CellGenome(normal=g.reduce, reduce=g.normal)
    assert SPACE.key(g) != SPACE.key(swapped) or g.normal == g.reduce


def test_mutations_change_exactly_one_branch():
    rng = random.Random(2)
    for _ in range(200):
        g = SPACE.sample(rng)
        child, name = SPACE.mutate(g, rng)
        SPACE.validate(child)
        diffs = [(c, i, j) for c in ("normal", "reduce") for i, (a, b) in
                 enumerate(zip(getattr(g, c).blocks, getattr(child, c).blocks))
                 for j in range(2) if a.branches[j] != b.branches[j]]
        assert len(diffs) == 1, name
        c, i, j = diffs[0]
        before, after = getattr(g, c).blocks[i].branches[j], getattr(child, c).blocks[i].branches[j]
        assert (before.op != after.op) == (name == "mut_op")
        assert (before.input != after.input) == (name == "mut_input")


def test_crossover_takes_every_block_from_a_parent():
    rng = random.Random(3)
    for _ in range(100):
        a, b = SPACE.sample(rng), SPACE.sample(rng)
        child, name = SPACE.crossover(a, b, rng)
        SPACE.validate(child)
        for c in ("normal", "reduce"):
            for i, block in enumerate(getattr(child, c).blocks):
                assert block in (getattr(a, c).blocks[i], getattr(b, c).blocks[i])
        if name == "cx_cells":
            assert {child.normal, child.reduce} <= {a.normal, a.reduce, b.normal, b.reduce}
