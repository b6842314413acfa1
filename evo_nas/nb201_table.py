"""NAS-Bench-201 as a lookup table: a tabular fitness for the `nb201` space.   [stdlib only]

The packaged table (evo_nas/data/nb201.csv.gz, built by tools/build_nb201_table.py; sources and
licences in evo_nas/data/NB201-PROVENANCE.md) has one row per NAS-Bench-201 index with, for each
data set, the 12-epoch validation accuracy (the fitness a search sees), the 200-epoch test
accuracy (what the returned architecture is reported with: the benchmark's protocol), and the
parameters and MACs of the TinyNetwork skeleton (C=16, N=5) as our builder and counter give them.
Accuracies are in percent in the file and fractions in `result()`, as everywhere else in evonas.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
from dataclasses import dataclass
from importlib import resources

from evo_nas.config import Skeleton
from evo_nas.errors import ConfigError, GenomeError
from evo_nas.records import Result, Status
from evo_nas.spaces.nb201 import NB201Genome

DATASETS = ("cifar10", "cifar100", "imagenet16-120")
CELLS = 15625
SHAPES = {"cifar10": ((3, 32, 32), 10), "cifar100": ((3, 32, 32), 100), "imagenet16-120": ((3, 16, 16), 120)}


@dataclass(frozen=True)
class Entry:
    """One cell on one data set, as the table has it."""

    index: int  # NAS-Bench-201 index
    arch: str
    val12: float  # 12-epoch validation accuracy, percent
    test200: float  # 200-epoch test accuracy, percent
    params: int
    macs: int


class Table:
    """All 15,625 cells; columns are per data set lists indexed by NAS-Bench-201 index."""

    def __init__(self, rows: list[dict[str, str]]):
        if len(rows) != CELLS or any(int(r["index"]) != i for i, r in enumerate(rows)):
            raise ValueError(f"the NB201 table needs rows 0..{CELLS - 1} in order")
        self.archs = [r["arch"] for r in rows]
        self.by_arch = {a: i for i, a in enumerate(self.archs)}
        self.by_edges = {NB201Genome.from_arch_string(a).edges: i for i, a in enumerate(self.archs)}
        self.columns: dict[str, dict[str, list]] = {}
        for d in DATASETS:
            self.columns[d] = {
                "val12": [float(r[f"{d}_val12"]) for r in rows],
                "test200": [float(r[f"{d}_test200"]) for r in rows],
                "params": [int(r[f"{d}_params"]) for r in rows],
                "macs": [int(r[f"{d}_macs"]) for r in rows],
            }

    def column(self, dataset: str, name: str) -> list:
        return self.columns[check_dataset(dataset)][name]

    def index(self, cell: NB201Genome | str | int) -> int:
        """The NAS-Bench-201 index of a genome, an arch string or an index."""
        if isinstance(cell, int):
            if not 0 <= cell < CELLS:
                raise GenomeError(f"NB201 index {cell}: must be in 0..{CELLS - 1}")
            return cell
        if isinstance(cell, str):
            if cell in self.by_arch:
                return self.by_arch[cell]
            cell = NB201Genome.from_arch_string(cell)  # raises on a malformed string
        if getattr(cell, "hparams", None) is not None:
            raise GenomeError("NB201 table: the benchmark has one training recipe; this genome carries hparams")
        if cell.edges not in self.by_edges:
            raise GenomeError(f"NB201 table: {cell.arch_string} is not a NAS-Bench-201 cell")
        return self.by_edges[cell.edges]

    def entry(self, cell: NB201Genome | str | int, dataset: str) -> Entry:
        i = self.index(cell)
        c = self.columns[check_dataset(dataset)]
        return Entry(i, self.archs[i], c["val12"][i], c["test200"][i], c["params"][i], c["macs"][i])


def check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise ConfigError(f"dataset: NAS-Bench-201 has {', '.join(DATASETS)}; got {dataset!r}")
    return dataset


def skeleton(dataset: str) -> Skeleton:
    """The benchmark's TinyNetwork skeleton (C=16, N=5) for a data set's images and classes: what
    the table's params, MACs and zero-cost scores were taken in."""
    shape, classes = SHAPES[check_dataset(dataset)]
    return Skeleton(input_shape=shape, classes=classes, init_channels=16, depth=5)


@functools.cache
def table() -> Table:
    """The packaged table, read once per process (about 0.2 s)."""
    raw = resources.files("evo_nas").joinpath("data", "nb201.csv.gz").read_bytes()
    return Table(list(csv.DictReader(io.StringIO(gzip.decompress(raw).decode()))))


@functools.cache
def synflow(dataset: str) -> list[float]:
    """Every cell's synflow score at initialisation (evaluate/zero_cost.py) in the benchmark's
    skeleton for `dataset`, by index: evo_nas/data/nb201-synflow.csv.gz, made by
    tools/build_nb201_scores.py (no data needed, so it could be taken offline)."""
    raw = resources.files("evo_nas").joinpath("data", "nb201-synflow.csv.gz").read_bytes()
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(raw).decode())))
    if len(rows) != CELLS or any(int(r["index"]) != i for i, r in enumerate(rows)):
        raise ValueError(f"the NB201 synflow table needs rows 0..{CELLS - 1} in order")
    return [float(r[f"{check_dataset(dataset)}_synflow"]) for r in rows]


def lookup(cell: NB201Genome | str | int, dataset: str) -> Entry:
    return table().entry(cell, dataset)


def result(genome: NB201Genome | str | int, dataset: str) -> Result:
    """An evaluation's Result from the table: the fitness `accuracy` is the 12-epoch validation
    accuracy (the 200-epoch test accuracy is `lookup(...).test200`, for reporting only)."""
    e = lookup(genome, dataset)
    return Result(Status.OK, accuracy=e.val12 / 100, macs=e.macs, params=e.params)
