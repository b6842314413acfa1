"""The NASNet cell space: a normal and a reduction cell of B blocks each.   [stdlib only]

A block picks two inputs among the cell's two inputs and earlier blocks, applies one operation
to each and adds the results. State 0 is the output of cell k-2, state 1 of cell k-1, block i
makes state i+2 (the DARTS convention). Mutations follow AmoebaNet (change an op; change an
input, the "hidden-state mutation"); crossover is uniform over blocks, or swaps whole cells.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from evo_nas.canon import Node, canonical_form
from evo_nas.errors import ConfigError, GenomeError, short
from evo_nas.genome import LIMITS, Genome, at_most, int_list, is_int, mapping, no_unknown_keys
from evo_nas.spaces.base import SearchSpace, SpaceEntry, option

OPS = (
    "skip_connect",  # identity at stride 1, FactorizedReduce at stride 2
    "sep_conv_3x3",
    "sep_conv_5x5",
    "sep_conv_7x7",
    "dil_conv_3x3",
    "dil_conv_5x5",
    "avg_pool_3x3",
    "max_pool_3x3",
    "conv_7x1_1x7",
)
CELLS = ("normal", "reduce")


@dataclass(frozen=True)
class Branch:
    op: str
    input: int


@dataclass(frozen=True)
class Block:
    """Two branches whose outputs are added. Their order carries no meaning."""

    left: Branch
    right: Branch

    @property
    def branches(self) -> tuple[Branch, Branch]:
        return (self.left, self.right)


@dataclass(frozen=True)
class Cell:
    blocks: tuple[Block, ...]
    concat: tuple[int, ...] | None = None  # None: the NASNet rule, all states no block consumes

    def output_states(self) -> tuple[int, ...]:
        """States concatenated into the cell output, in ascending order."""
        if self.concat is not None:
            return tuple(sorted(self.concat))
        used = {b.input for block in self.blocks for b in block.branches}
        return tuple(s for s in range(2, len(self.blocks) + 2) if s not in used)


@dataclass(frozen=True)
class CellGenome(Genome):
    space = "cells"
    BODY = CELLS
    normal: Cell
    reduce: Cell

    def body(self) -> dict:
        return {name: _cell_to_dict(getattr(self, name)) for name in CELLS}

    @classmethod
    def from_body(cls, d: dict, where: str, **meta) -> CellGenome:
        return cls(normal=_cell(d["normal"], where, "normal"), reduce=_cell(d["reduce"], where, "reduce"), **meta)

    def check(self, where: str) -> None:
        for name in CELLS:
            _check_cell(getattr(self, name), f"{where}: {name}")

    def describe(self) -> str:
        return f"normal {_describe_cell(self.normal)} / reduce {_describe_cell(self.reduce)}"

    def body_lines(self) -> list[str]:
        lines = []
        for name in CELLS:
            cell = getattr(self, name)
            lines += [f"{name}:", "  blocks:"]
            lines += [f"  - [[{b.left.op}, {b.left.input}], [{b.right.op}, {b.right.input}]]" for b in cell.blocks]
            if cell.concat is not None:
                lines.append(f"  concat: [{', '.join(map(str, cell.concat))}]")
        return lines


    def structure(self, reductions: int) -> dict[str, str]:
        out = {}
        for name in CELLS:
            cell = getattr(self, name)
            dead = sorted(set(range(2, len(cell.blocks) + 2)) - live_states(cell))
            out[name] = (f"{len(cell.blocks)} blocks, output concat {list(cell.output_states())}"
                         + (f", dead states {dead}" if dead else ""))
        return out


@dataclass(frozen=True)
class CellSpace(SearchSpace):
    name = "cells"
    blocks: int = option(5, "cells: blocks per cell (NASNet uses 5)")
    ops: tuple[str, ...] = option(OPS, "cells/nb201: the op set, comma-separated")

    def check_options(self) -> None:
        if not 1 <= self.blocks <= LIMITS["blocks"]:
            raise ConfigError(f"blocks: must be 1 to {LIMITS['blocks']}, got {short(self.blocks)}")
        _check_op_set(self.ops, OPS, self.name)

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
        genome.check(where)
        for name in CELLS:
            cell = getattr(genome, name)
            if len(cell.blocks) != self.blocks:
                raise GenomeError(f"{where}: {name}.blocks: has {len(cell.blocks)} blocks, "
                                  f"this space has {self.blocks}")
            for i, block in enumerate(cell.blocks):
                for j, branch in enumerate(block.branches):
                    if branch.op not in self.ops:
                        raise GenomeError(f"{where}: {name}.blocks[{i}][{j}]: op {short(branch.op)} "
                                          f"is not in this space's op set")

    # -- the flat integer encoding (NSGA-Net's micro encoding) ------------------------------
    def encode(self, genome: CellGenome) -> list[int]:
        """Per block [op, input, op, input], the normal cell's blocks then the reduction cell's;
        an op is its index in the space's op set."""
        return [g for name in CELLS for block in getattr(genome, name).blocks for branch in block.branches
                for g in (self.ops.index(branch.op), branch.input)]

    def decode(self, genes: list[int], like: CellGenome) -> CellGenome:
        cells = {}
        for c, name in enumerate(CELLS):
            part = genes[4 * self.blocks * c: 4 * self.blocks * (c + 1)]
            blocks = tuple(Block(Branch(self.ops[part[k]], part[k + 1]), Branch(self.ops[part[k + 2]], part[k + 3]))
                           for k in range(0, len(part), 4))
            cells[name] = Cell(blocks=blocks, concat=getattr(like, name).concat)
        return CellGenome(**cells, hparams=like.hparams)

    def gene_bounds(self, length: int) -> tuple[list[int], list[int]]:
        """An op gene takes any op; block i's input genes take the states 0..i+1."""
        up = [x for _ in CELLS for i in range(self.blocks) for x in (len(self.ops) - 1, i + 1) * 2]
        return [0] * len(up), up


def _check_op_set(ops: tuple[str, ...], known: tuple[str, ...], space: str) -> None:
    unknown = [op for op in ops if op not in known]
    if unknown or not ops:
        raise ConfigError(f"ops: {unknown[0] if unknown else 'empty'} is not an op of the {space} space "
                          f"(known: {', '.join(known)})")


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
    return CellGenome(normal=mix(a.normal, b.normal), reduce=mix(a.reduce, b.reduce), hparams=a.hparams)


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


# -- the dict form and the structural rules -------------------------------------------------

def _cell_to_dict(cell: Cell) -> dict:
    out: dict = {"blocks": [[[b.left.op, b.left.input], [b.right.op, b.right.input]] for b in cell.blocks]}
    if cell.concat is not None:
        out["concat"] = list(cell.concat)
    return out


def _cell(data: object, where: str, path: str) -> Cell:
    d = mapping(data, where, path)
    no_unknown_keys(d, {"blocks", "concat"}, where, path)
    blocks = d.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        raise GenomeError(f"{where}: {path}.blocks: must be a non-empty list of blocks")
    out = []
    for i, block in enumerate(blocks):
        at = f"{path}.blocks[{i}]"
        if not isinstance(block, list) or len(block) != 2:
            raise GenomeError(f"{where}: {at}: must be two branches [[op, input], [op, input]]")
        out.append(Block(*(_branch(b, where, f"{at}[{j}]") for j, b in enumerate(block))))
    concat = d.get("concat")
    if concat is not None:
        concat = tuple(int_list(concat, where, f"{path}.concat"))
    return Cell(blocks=tuple(out), concat=concat)


def _branch(data: object, where: str, path: str) -> Branch:
    if not isinstance(data, list) or len(data) != 2 or not isinstance(data[0], str) or not is_int(data[1]):
        raise GenomeError(f"{where}: {path}: must be [op, input] with a string op and an integer input")
    return Branch(op=data[0], input=data[1])


def _check_cell(cell: Cell, at_cell: str) -> None:
    n = len(cell.blocks)
    at_most(n, "blocks", f"{at_cell}.blocks")
    for i, block in enumerate(cell.blocks):
        for j, branch in enumerate(block.branches):
            at = f"{at_cell}.blocks[{i}][{j}]"
            if branch.op not in OPS:
                raise GenomeError(f"{at}: unknown op {short(branch.op)} (known: {', '.join(OPS)})")
            if not 0 <= branch.input <= i + 1:
                what = "points forward" if branch.input > i + 1 else "is negative"
                raise GenomeError(f"{at}: input {branch.input} {what}; block {i} may use states 0..{i + 1}")
    if cell.concat is not None:
        _check_concat(cell.concat, n, f"{at_cell}.concat")


def _check_concat(concat: tuple[int, ...], n: int, at: str) -> None:
    if not concat:
        raise GenomeError(f"{at}: must name at least one state")
    if len(set(concat)) != len(concat):
        raise GenomeError(f"{at}: lists a state twice: {list(concat)}")
    bad = [s for s in concat if not 2 <= s <= n + 1]
    if bad:
        raise GenomeError(f"{at}: state {bad[0]} is out of range; block outputs are states 2..{n + 1}")


def _describe_cell(cell: Cell) -> str:
    blocks = ",".join(f"{b.left.op}@{b.left.input}+{b.right.op}@{b.right.input}" for b in cell.blocks)
    return f"[{blocks}]"


ENTRY = SpaceEntry(
    name="cells", genome=CellGenome, space=CellSpace, network="evo_nas.nets.cells",
    fitness="validation accuracy of DARTS' CIFAR network built from the two cells, after the brief proxy training",
    skeleton_fields=frozenset({"init_channels", "depth", "stem_multiplier", "stem", "reductions", "auxiliary",
                               "drop_path", "dropout"}),
    # CPU: the most repeatable setting measured that fits `make run` on 2 cores (BENCHMARKS.md,
    # "The CPU proxy"): two cells, 3,000 training images, the whole validation split.
    # GPU: DARTS' search network (C=16, 8 cells).
    proxy={"cpu": {"init_channels": 8, "depth": 2, "train_limit": 3000, "val_limit": None},
           "cuda": {"init_channels": 16, "depth": 8}},
    # DARTS' CIFAR-10 evaluation network, auxiliary head (weight 0.4) and drop path 0.2: the
    # published parameter counts are of this network, so trained cells compare with the papers'.
    final={"init_channels": 36, "depth": 20, "auxiliary": True, "drop_path": 0.2},
    inspect={"init_channels": 36, "depth": 20},
    # DARTS' ImageNet network (NetworkImageNet, the mobile setting): C=48, 14 cells, 224x224
    # images, auxiliary head (weight 0.4), no drop path; DARTS-V2's 4.7M parameters are of it.
    skeletons={"imagenet": {"stem": "imagenet", "init_channels": 48, "depth": 14, "auxiliary": True,
                            "input_shape": (3, 224, 224), "classes": 1000}},
)
