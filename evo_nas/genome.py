"""Genomes as frozen values: the three search spaces' architectures as plain data.   [stdlib only]

A genome says *what* network to build, never how to train it (except through the optional
hyperparameter genes). It is hashable, printable and converts to and from a plain dict, which
is what genome files (`genome_io`) and the journal store. Which genomes are legal in a run, and
their canonical keys, belong to the search space (`evo_nas.spaces`).

Index conventions (the same in files, code and docs):
- cells: state 0 is the output of cell k-2, state 1 of cell k-1, block i makes state i+2
  (the DARTS convention; see reference/known-cells.md).
- layers: state 0 is the input image, layer i makes state i+1.
- nb201: edges in arch-string order 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import ClassVar

from evo_nas.errors import GenomeError

CELL_OPS = (
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
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NB201_EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # (source, target)
OPTIMIZERS = ("sgd", "rmsprop", "adam")


@dataclass(frozen=True)
class HParams:
    """Training hyperparameters carried as genes (off unless the space enables them)."""

    lr: float
    weight_decay: float
    dropout: float
    optimizer: str

    def to_dict(self) -> dict:
        return {"lr": self.lr, "weight_decay": self.weight_decay, "dropout": self.dropout,
                "optimizer": self.optimizer}


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
class Layer:
    """conv(height x width, filters) -> BN -> ReLU over the depth-concat of `inputs`."""

    height: int
    width: int
    filters: int
    inputs: tuple[int, ...]  # sorted states: 0 is the image, j+1 is layer j


@dataclass(frozen=True)
class _Genome:
    space: ClassVar[str]
    hparams: HParams | None = field(default=None, kw_only=True)
    # Where a genome came from (a published cell, a file); not part of its identity.
    name: str = field(default="", kw_only=True, compare=False)
    source: str = field(default="", kw_only=True, compare=False)

    def anonymous(self):
        """The same architecture without name and source, as an operator's child."""
        return replace(self, name="", source="")


@dataclass(frozen=True)
class CellGenome(_Genome):
    space: ClassVar[str] = "cells"
    normal: Cell
    reduce: Cell


@dataclass(frozen=True)
class LayerGenome(_Genome):
    space: ClassVar[str] = "layers"
    layers: tuple[Layer, ...]


@dataclass(frozen=True)
class NB201Genome(_Genome):
    space: ClassVar[str] = "nb201"
    edges: tuple[str, ...]  # six ops, NB201_EDGES order

    @property
    def arch_string(self) -> str:
        ops = [f"{op}~{src}" for op, (src, _) in zip(self.edges, NB201_EDGES)]
        return f"|{ops[0]}|+|{ops[1]}|{ops[2]}|+|{ops[3]}|{ops[4]}|{ops[5]}|"

    @classmethod
    def from_arch_string(cls, text: str, **meta) -> NB201Genome:
        groups = text.strip().strip("|").split("|+|")
        if len(groups) != 3:
            raise GenomeError(f"arch string {text!r}: expected 3 groups separated by '|+|'")
        edges = []
        for target, group in enumerate(groups, start=1):
            items = group.split("|")
            if len(items) != target:
                raise GenomeError(f"arch string {text!r}: node {target} needs {target} edges")
            for src, item in enumerate(items):
                op, _, source = item.partition("~")
                if source != str(src):
                    raise GenomeError(f"arch string {text!r}: edge {item!r} should come from node {src}")
                edges.append(op)
        return cls(edges=tuple(edges), **meta)


Genome = CellGenome | LayerGenome | NB201Genome
GENOME_TYPES = {cls.space: cls for cls in (CellGenome, LayerGenome, NB201Genome)}


# -- plain dicts: the form genome files and the journal store ------------------------------

def to_dict(genome: Genome) -> dict:
    """Genome -> plain dict (JSON/YAML-ready). `name`/`source` are included when set."""
    out: dict = {"space": genome.space}
    if genome.name:
        out["name"] = genome.name
    if genome.source:
        out["source"] = genome.source
    if isinstance(genome, CellGenome):
        out["normal"] = _cell_to_dict(genome.normal)
        out["reduce"] = _cell_to_dict(genome.reduce)
    elif isinstance(genome, LayerGenome):
        out["layers"] = [{"height": x.height, "width": x.width, "filters": x.filters,
                          "inputs": list(x.inputs)} for x in genome.layers]
    else:
        out["arch"] = genome.arch_string
    if genome.hparams is not None:
        out["hparams"] = genome.hparams.to_dict()
    return out


def _cell_to_dict(cell: Cell) -> dict:
    out: dict = {"blocks": [[[b.left.op, b.left.input], [b.right.op, b.right.input]]
                            for b in cell.blocks]}
    if cell.concat is not None:
        out["concat"] = list(cell.concat)
    return out


def from_dict(data: object, where: str = "genome") -> Genome:
    """Plain dict -> genome, checking structure and types (not a space's rules).

    `where` names the file or record in error messages: "<where>: <field>: <problem>".
    """
    d = _mapping(data, where, "")
    space = d.get("space")
    if space not in GENOME_TYPES:
        raise GenomeError(f"{where}: space: must be one of {', '.join(GENOME_TYPES)}, got {space!r}")
    body = {"cells": ("normal", "reduce"), "layers": ("layers",), "nb201": ("arch",)}[space]
    _no_unknown_keys(d, {"space", "name", "source", "hparams", *body}, where, "")
    meta = {"name": _opt_str(d, "name", where), "source": _opt_str(d, "source", where),
            "hparams": _hparams(d["hparams"], where) if d.get("hparams") is not None else None}
    for key in body:
        if key not in d:
            raise GenomeError(f"{where}: {key}: missing")
    if space == "cells":
        return CellGenome(normal=_cell(d["normal"], where, "normal"),
                          reduce=_cell(d["reduce"], where, "reduce"), **meta)
    if space == "layers":
        return LayerGenome(layers=_layers(d["layers"], where), **meta)
    arch = d["arch"]
    if not isinstance(arch, str):
        raise GenomeError(f"{where}: arch: must be an arch string like '|op~0|+|op~0|op~1|+|...|'")
    try:
        return NB201Genome.from_arch_string(arch, **meta)
    except GenomeError as err:
        raise GenomeError(f"{where}: arch: {err}") from None


def _cell(data: object, where: str, path: str) -> Cell:
    d = _mapping(data, where, path)
    _no_unknown_keys(d, {"blocks", "concat"}, where, path)
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
        concat = tuple(_int_list(concat, where, f"{path}.concat"))
    return Cell(blocks=tuple(out), concat=concat)


def _branch(data: object, where: str, path: str) -> Branch:
    if (not isinstance(data, list) or len(data) != 2 or not isinstance(data[0], str)
            or not _is_int(data[1])):
        raise GenomeError(f"{where}: {path}: must be [op, input] with a string op and an integer input")
    return Branch(op=data[0], input=data[1])


def _layers(data: object, where: str) -> tuple[Layer, ...]:
    if not isinstance(data, list) or not data:
        raise GenomeError(f"{where}: layers: must be a non-empty list of layers")
    out = []
    for i, item in enumerate(data):
        at = f"layers[{i}]"
        d = _mapping(item, where, at)
        _no_unknown_keys(d, {"height", "width", "filters", "inputs"}, where, at)
        for key in ("height", "width", "filters"):
            if not _is_int(d.get(key)):
                raise GenomeError(f"{where}: {at}.{key}: must be an integer, got {d.get(key)!r}")
        inputs = _int_list(d.get("inputs"), where, f"{at}.inputs")
        out.append(Layer(height=d["height"], width=d["width"], filters=d["filters"],
                         inputs=tuple(inputs)))
    return tuple(out)


def _hparams(data: object, where: str) -> HParams:
    d = _mapping(data, where, "hparams")
    names = [f.name for f in fields(HParams)]
    _no_unknown_keys(d, set(names), where, "hparams")
    numbers = {key: _number(d.get(key)) for key in ("lr", "weight_decay", "dropout")}
    for key, value in numbers.items():
        if value is None:
            raise GenomeError(f"{where}: hparams.{key}: must be a number, got {d.get(key)!r}")
    if d.get("optimizer") not in OPTIMIZERS:
        raise GenomeError(f"{where}: hparams.optimizer: must be one of {', '.join(OPTIMIZERS)}, "
                          f"got {d.get('optimizer')!r}")
    return HParams(**numbers, optimizer=d["optimizer"])


def _number(value: object) -> float | None:
    """A float, also from a string: YAML 1.1 reads `1e-4` (no dot) as a string."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _mapping(data: object, where: str, path: str) -> dict:
    if not isinstance(data, dict):
        raise GenomeError(f"{where}: {path or 'top level'}: must be a mapping, got {type(data).__name__}")
    return data


def _no_unknown_keys(d: dict, allowed: set, where: str, path: str) -> None:
    unknown = sorted(str(k) for k in d if k not in allowed)
    if unknown:
        prefix = f"{path}." if path else ""
        raise GenomeError(f"{where}: {prefix}{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed))})")


def _int_list(data: object, where: str, path: str) -> list[int]:
    if not isinstance(data, list) or not all(_is_int(x) for x in data):
        raise GenomeError(f"{where}: {path}: must be a list of integers, got {data!r}")
    return data


def _opt_str(d: dict, key: str, where: str) -> str:
    value = d.get(key, "")
    if not isinstance(value, str):
        raise GenomeError(f"{where}: {key}: must be a string")
    return value


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def describe(genome: Genome) -> str:
    """A compact one-line description, for hover text and tables."""
    if isinstance(genome, CellGenome):
        return f"normal {_describe_cell(genome.normal)} / reduce {_describe_cell(genome.reduce)}"
    if isinstance(genome, LayerGenome):
        return " ".join(f"{x.height}x{x.width}:{x.filters}<{','.join(map(str, x.inputs))}"
                        for x in genome.layers)
    return genome.arch_string


def _describe_cell(cell: Cell) -> str:
    blocks = ",".join(f"{b.left.op}@{b.left.input}+{b.right.op}@{b.right.input}"
                      for b in cell.blocks)
    return f"[{blocks}]"
