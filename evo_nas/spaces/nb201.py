"""The NAS-Bench-201 cell: 4 nodes, 6 edges, one of 5 ops on each; its canonical key reduces a cell
to what can affect its output (docs/design.md).   [stdlib only]
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace

from evo_nas.canon import Node, canonical_form
from evo_nas.errors import GenomeError, short
from evo_nas.genome import Genome
from evo_nas.spaces.base import SearchSpace, SpaceEntry, option
from evo_nas.spaces.cells import _check_op_set

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # (source, target), in arch-string order
ZERO_CELL = "zero"  # the key of every cell whose output is identically zero


@dataclass(frozen=True)
class NB201Genome(Genome):
    space = "nb201"
    BODY = ("arch",)
    edges: tuple[str, ...]  # six ops, EDGES order

    @property
    def arch_string(self) -> str:
        ops = [f"{op}~{src}" for op, (src, _) in zip(self.edges, EDGES)]
        return f"|{ops[0]}|+|{ops[1]}|{ops[2]}|+|{ops[3]}|{ops[4]}|{ops[5]}|"

    @classmethod
    def from_arch_string(cls, text: str, **meta) -> NB201Genome:
        groups = text.strip().strip("|").split("|+|")
        if len(groups) != 3:
            raise GenomeError(f"arch string {short(text)}: expected 3 groups separated by '|+|'")
        edges = []
        for target, group in enumerate(groups, start=1):
            items = group.split("|")
            if len(items) != target:
                raise GenomeError(f"arch string {short(text)}: node {target} needs {target} edges")
            for src, item in enumerate(items):
                op, _, source = item.partition("~")
                if source != str(src):
                    raise GenomeError(f"arch string {short(text)}: edge {short(item)} should come from node {src}")
                edges.append(op)
        return cls(edges=tuple(edges), **meta)

    def body(self) -> dict:
        return {"arch": self.arch_string}

    @classmethod
    def from_body(cls, d: dict, where: str, **meta) -> NB201Genome:
        arch = d["arch"]
        if not isinstance(arch, str):
            raise GenomeError(f"{where}: arch: must be an arch string like '|op~0|+|op~0|op~1|+|...|'")
        try:
            return cls.from_arch_string(arch, **meta)
        except GenomeError as err:
            raise GenomeError(f"{where}: arch: {err}") from None

    def check(self, where: str) -> None:
        validate_structure(self, where)

    def describe(self) -> str:
        return self.arch_string

    def body_lines(self) -> list[str]:
        return [f"arch: {json.dumps(self.arch_string)}"]  # a JSON string is a valid YAML scalar


@dataclass(frozen=True)
class NB201Space(SearchSpace):
    name = "nb201"
    ops: tuple[str, ...] = option(OPS, "cells/nb201: the op set, comma-separated")

    def check_options(self) -> None:
        _check_op_set(self.ops, OPS, self.name)

    def sample_arch(self, rng: random.Random) -> NB201Genome:
        return NB201Genome(edges=tuple(rng.choice(self.ops) for _ in EDGES))

    def mutations(self):
        return {"mut_edge": self.mut_edge}

    def crossovers(self):
        return {"cx_uniform": cx_uniform_edges}

    def mut_edge(self, genome: NB201Genome, rng: random.Random) -> NB201Genome:
        """A different op on one edge."""
        i = rng.randrange(len(EDGES))
        op = rng.choice([o for o in self.ops if o != genome.edges[i]])
        return replace(genome, edges=genome.edges[:i] + (op,) + genome.edges[i + 1:])

    def arch_key(self, genome: NB201Genome) -> str:
        return nb201_key(genome.edges)

    def validate_arch(self, genome: NB201Genome, where: str) -> None:
        genome.check(where)
        for i, op in enumerate(genome.edges):
            if op not in self.ops:
                raise GenomeError(f"{where}: arch: edge {i} op {short(op)} is not in this space's op set")

    # -- the flat integer encoding: one gene per edge, the index of its op ------------------
    def encode(self, genome: NB201Genome) -> list[int]:
        return [self.ops.index(op) for op in genome.edges]

    def decode(self, genes: list[int], like: NB201Genome) -> NB201Genome:
        return NB201Genome(edges=tuple(self.ops[g] for g in genes), hparams=like.hparams)

    def gene_bounds(self, length: int) -> tuple[list[int], list[int]]:
        return [0] * len(EDGES), [len(self.ops) - 1] * len(EDGES)


def cx_uniform_edges(a: NB201Genome, b: NB201Genome, rng: random.Random) -> NB201Genome:
    edges = tuple(x if rng.random() < 0.5 else y for x, y in zip(a.edges, b.edges))
    return NB201Genome(edges=edges, hparams=a.hparams)


def nb201_key(edges: tuple[str, ...]) -> str:
    # Edge list (op, src, dst) without `none`.
    live = [(op, s, t) for op, (s, t) in zip(edges, EDGES) if op != "none"]
    live = _prune(live)
    if not live:
        return ZERO_CELL
    live, output = _contract_skips(live)
    return _as_dag(live, output)


def _prune(edges: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Keep edges between nodes reachable from node 0 that also reach node 3."""
    forward, backward = {0}, {3}
    for _, s, t in sorted(edges, key=lambda e: e[1]):
        if s in forward:
            forward.add(t)
    for _, s, t in sorted(edges, key=lambda e: -e[2]):
        if t in backward:
            backward.add(s)
    alive = forward & backward
    return [e for e in edges if e[1] in alive and e[2] in alive]


def _contract_skips(edges: list[tuple[str, int, int]]) -> tuple[list[tuple[str, int, int]], int]:
    """Merge each node whose only input is one skip edge into that input's node."""
    output = 3
    for node in (1, 2, 3):  # ascending: a contracted node's input is already final
        incoming = [e for e in edges if e[2] == node]
        if len(incoming) == 1 and incoming[0][0] == "skip_connect":
            src = incoming[0][1]
            edges = [(op, src if s == node else s, t) for op, s, t in edges if t != node]
            if node == output:
                output = src
    return edges, output


def _as_dag(edges: list[tuple[str, int, int]], output: int) -> str:
    present = sorted({0, output} | {s for _, s, _ in edges} | {t for _, _, t in edges})
    index = {v: i for i, v in enumerate(present)}
    nodes = []
    for v in present:
        label = "in" if v == 0 else "n"
        if v == output:
            label += "+out"
        nodes.append(Node(label, tuple((op, index[s]) for op, s, t in edges if t == v)))
    return canonical_form(nodes)


def validate_structure(genome: NB201Genome, where: str) -> None:
    if len(genome.edges) != len(EDGES):
        raise GenomeError(f"{where}: arch: needs {len(EDGES)} edges, got {len(genome.edges)}")
    for i, op in enumerate(genome.edges):
        if op not in OPS:
            raise GenomeError(f"{where}: arch: edge {i} has unknown op {short(op)} (known: {', '.join(OPS)})")


ENTRY = SpaceEntry(
    name="nb201", genome=NB201Genome, space=NB201Space, network="evo_nas.nets.nb201",
    fitness="validation accuracy of NAS-Bench-201's TinyNetwork built from the cell, after the brief proxy "
            "training on the run's data set (`evonas study` reads the benchmark's table instead)",
    skeleton_fields=frozenset({"init_channels", "depth", "dropout"}),
    # The benchmark's own network, C=16, N=5 cells per stage, on every device and for training.
    proxy={"cpu": {"init_channels": 16, "depth": 5}, "cuda": {"init_channels": 16, "depth": 5}},
    final={"init_channels": 16, "depth": 5}, inspect={"init_channels": 16, "depth": 5},
)
