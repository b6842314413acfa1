"""The NASNet cell space: a normal and a reduction cell of B blocks each.   [stdlib only]

A block picks two inputs among the cell's two inputs and earlier blocks, applies one operation
to each and adds the results. Mutations follow AmoebaNet (change an op; change an input, the
"hidden-state mutation"); crossover is uniform over blocks, or swaps whole cells.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from evo_nas.canon import Node, canonical_form
from evo_nas.errors import GenomeError
from evo_nas.genome import CELL_OPS, Block, Branch, Cell, CellGenome
from evo_nas.spaces.base import SearchSpace

CELLS = ("normal", "reduce")


@dataclass(frozen=True)
class CellSpace(SearchSpace):
    name = "cells"
    blocks: int = 5
    ops: tuple[str, ...] = CELL_OPS

    def sample_arch(self, rng: random.Random) -> CellGenome:
        return CellGenome(normal=self._sample_cell(rng), reduce=self._sample_cell(rng))

    def _sample_cell(self, rng: random.Random) -> Cell:
        return Cell(blocks=tuple(
            Block(*(Branch(rng.choice(self.ops), rng.randrange(i + 2)) for _ in range(2)))
            for i in range(self.blocks)))

    def mutations(self):
        return {"mut_op": self.mut_op, "mut_input": self.mut_input}

    def crossovers(self):
        return {"cx_uniform": cx_uniform_blocks, "cx_cells": cx_swap_cells}

    def mut_op(self, genome: CellGenome, rng: random.Random) -> CellGenome:
        """Replace the operation of one branch by a different one."""
        def change(branch: Branch, i: int) -> Branch:
            return replace(branch, op=rng.choice([op for op in self.ops if op != branch.op]))
        return _mutate_branch(genome, rng, change)

    def mut_input(self, genome: CellGenome, rng: random.Random) -> CellGenome:
        """Hidden-state mutation: rewire one branch of block i to another state in [0, i+1]."""
        def change(branch: Branch, i: int) -> Branch:
            return replace(branch, input=rng.choice([s for s in range(i + 2) if s != branch.input]))
        return _mutate_branch(genome, rng, change)

    def arch_key(self, genome: CellGenome) -> str:
        return f"N[{cell_key(genome.normal)}]R[{cell_key(genome.reduce)}]"

    def validate_arch(self, genome: CellGenome, where: str) -> None:
        validate_structure(genome, where)
        for name in CELLS:
            cell = getattr(genome, name)
            if len(cell.blocks) != self.blocks:
                raise GenomeError(f"{where}: {name}.blocks: has {len(cell.blocks)} blocks, "
                                  f"this space has {self.blocks}")
            for i, block in enumerate(cell.blocks):
                for j, branch in enumerate(block.branches):
                    if branch.op not in self.ops:
                        raise GenomeError(f"{where}: {name}.blocks[{i}][{j}]: op {branch.op!r} "
                                          f"is not in this space's op set")


def _mutate_branch(genome: CellGenome, rng: random.Random, change) -> CellGenome:
    which = rng.choice(CELLS)
    cell = getattr(genome, which)
    i = rng.randrange(len(cell.blocks))
    block = cell.blocks[i]
    if rng.random() < 0.5:
        block = Block(change(block.left, i), block.right)
    else:
        block = Block(block.left, change(block.right, i))
    blocks = cell.blocks[:i] + (block,) + cell.blocks[i + 1:]
    return replace(genome, **{which: replace(cell, blocks=blocks)})


def cx_uniform_blocks(a: CellGenome, b: CellGenome, rng: random.Random) -> CellGenome:
    """Each block of each cell from either parent (inputs stay valid: same block index)."""
    def mix(ca: Cell, cb: Cell) -> Cell:
        blocks = tuple(x if rng.random() < 0.5 else y for x, y in zip(ca.blocks, cb.blocks))
        return Cell(blocks=blocks, concat=ca.concat)
    return CellGenome(normal=mix(a.normal, b.normal), reduce=mix(a.reduce, b.reduce),
                      hparams=a.hparams)


def cx_swap_cells(a: CellGenome, b: CellGenome, rng: random.Random) -> CellGenome:
    """The normal cell of one parent with the reduction cell of the other."""
    first, second = (a, b) if rng.random() < 0.5 else (b, a)
    return CellGenome(normal=first.normal, reduce=second.reduce, hparams=a.hparams)


def live_states(cell: Cell) -> set[int]:
    """States that reach the cell output (all of them under the NASNet rule)."""
    live = set(cell.output_states())
    for i in range(len(cell.blocks) - 1, -1, -1):
        if i + 2 in live:
            live.update(b.input for b in cell.blocks[i].branches)
    return live


def cell_key(cell: Cell) -> str:
    """Canonical form: branches unordered, blocks renumbered, dead blocks dropped."""
    live = live_states(cell)
    outputs = set(cell.output_states())
    index = {0: 0, 1: 1}
    nodes = [Node("in0", ()), Node("in1", ())]
    for i, block in enumerate(cell.blocks):
        if i + 2 not in live:
            continue
        index[i + 2] = len(nodes)
        label = "out" if i + 2 in outputs else "blk"
        nodes.append(Node(label, tuple((b.op, index[b.input]) for b in block.branches)))
    return canonical_form(nodes)


def validate_structure(genome: CellGenome, where: str) -> None:
    """Rules any cell genome must follow, whatever the space's settings."""
    for name in CELLS:
        cell = getattr(genome, name)
        n = len(cell.blocks)
        for i, block in enumerate(cell.blocks):
            for j, branch in enumerate(block.branches):
                at = f"{where}: {name}.blocks[{i}][{j}]"
                if branch.op not in CELL_OPS:
                    raise GenomeError(f"{at}: unknown op {branch.op!r} (known: {', '.join(CELL_OPS)})")
                if not 0 <= branch.input <= i + 1:
                    what = "points forward" if branch.input > i + 1 else "is negative"
                    raise GenomeError(f"{at}: input {branch.input} {what}; block {i} may use states 0..{i + 1}")
        if cell.concat is not None:
            _validate_concat(cell.concat, n, f"{where}: {name}.concat")


def _validate_concat(concat: tuple[int, ...], n: int, at: str) -> None:
    if not concat:
        raise GenomeError(f"{at}: must name at least one state")
    if len(set(concat)) != len(concat):
        raise GenomeError(f"{at}: lists a state twice: {list(concat)}")
    bad = [s for s in concat if not 2 <= s <= n + 1]
    if bad:
        raise GenomeError(f"{at}: state {bad[0]} is out of range; block outputs are states 2..{n + 1}")
