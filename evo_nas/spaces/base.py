"""What a search space is: its operators (`SearchSpace`) and its registry entry (`SpaceEntry`).   [stdlib]

A space is a frozen config object whose fields are its options. Its operators are plain
functions of (genome(s), rng) that return a valid child and the operator's name (`mut_*`,
`cx_*`), which the journal records as the child's provenance. Architecture operators come from
the subclass; the hyperparameter gene operators are shared here.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

from evo_nas.errors import ConfigError, GenomeError, short
from evo_nas.genome import Genome
from evo_nas.spaces.hparams import HParamSpace, hparams_key

Mutation = Callable[[Genome, random.Random], Genome]
Crossover = Callable[[Genome, Genome, random.Random], Genome]


def reduction_layers(depth: int, reductions: int) -> frozenset[int]:
    """Where a skeleton of `depth` cells or layers has its stride-2 steps: at depth*k//(r+1)."""
    return frozenset(depth * k // (reductions + 1) for k in range(1, reductions + 1))


def option(default, help: str, **extra) -> Any:
    """A space option: a dataclass field whose metadata carries its help text."""
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class SearchSpace:
    name: ClassVar[str] = "base"
    hparams: HParamSpace | None = field(default=None, metadata={"cli": False})

    # -- to be provided by each space ---------------------------------------------------
    def sample_arch(self, rng: random.Random) -> Genome:
        raise NotImplementedError

    def mutations(self) -> dict[str, Mutation]:
        raise NotImplementedError

    def crossovers(self) -> dict[str, Crossover]:
        raise NotImplementedError

    def arch_key(self, genome: Genome) -> str:
        raise NotImplementedError

    def validate_arch(self, genome: Genome, where: str) -> None:
        raise NotImplementedError

    def check_options(self) -> None:
        """Raise ConfigError (naming the option) for settings no genome could satisfy."""

    # -- optional: a flat integer encoding, for DEAP's standard operators (evo_nas.variation) --
    # Every list of integers within gene_bounds (and, for a variable-length encoding, of a
    # length allowed by unit_bounds) must decode to a valid genome, and decode(encode(g), g) == g.
    def encode(self, genome: Genome) -> list[int]:
        raise NotImplementedError

    def decode(self, genes: list[int], like: Genome) -> Genome:
        """The genome of `genes`; what they do not encode (hparams, a cell's concat) comes from `like`."""
        raise NotImplementedError

    def gene_bounds(self, length: int) -> tuple[list[int], list[int]]:
        """Per gene, the least and the largest value (inclusive) of an encoding of `length` genes."""
        raise NotImplementedError

    def gene_unit(self) -> int:
        """Variable-length encodings: the genes of one unit (the layer space: of one layer); 0: a fixed length."""
        return 0

    def unit_bounds(self) -> tuple[int, int]:
        """Variable-length encodings: the fewest and the most units."""
        raise NotImplementedError

    @property
    def has_encoding(self) -> bool:
        return type(self).encode is not SearchSpace.encode

    # -- shared -------------------------------------------------------------------------
    @classmethod
    def options(cls) -> list:
        """The fields a run config may set (all but hparams)."""
        return [f for f in fields(cls) if f.metadata.get("cli", True)]

    @classmethod
    def from_options(cls, options: dict[str, Any], hparams: HParamSpace | None, **context) -> SearchSpace:
        """The space for a run: its options (missing ones at their defaults) and hparams.
        `context` carries skeleton settings a space's key depends on (the layer space's)."""
        known = {f.name for f in cls.options()}
        unknown = sorted(set(options) - known)
        if unknown:
            allowed = ", ".join(sorted(known)) or "none"
            raise ConfigError(f"{unknown[0]}: not an option of the {cls.name} space (its options: {allowed})")
        settable = {f.name for f in fields(cls)}
        space = cls(hparams=hparams, **options, **{k: v for k, v in context.items() if k in settable})
        space.check_options()
        return space

    def sample(self, rng: random.Random) -> Genome:
        genome = self.sample_arch(rng)
        if self.hparams is not None:
            genome = replace(genome, hparams=self.hparams.sample(rng))
        return genome

    def mutation_table(self) -> dict[str, Mutation]:
        """The space's own mutations by name, and the hparam one when it searches hyperparameters."""
        ops = dict(self.mutations())
        if self.hparams is not None:
            ops["mut_hparams"] = lambda g, r: replace(g, hparams=self.hparams.mutate(g.hparams, r))
        return ops

    def mutate(self, genome: Genome, rng: random.Random, ops: dict[str, Mutation] | None = None) -> tuple[Genome, str]:
        """One mutation, chosen uniformly among `ops` (default: the space's own and the hparam one)."""
        ops = ops if ops is not None else self.mutation_table()
        name = rng.choice(sorted(ops))
        return ops[name](genome, rng).anonymous(), name

    def crossover(self, a: Genome, b: Genome, rng: random.Random,
                  ops: dict[str, Crossover] | None = None) -> tuple[Genome, str]:
        """One crossover, chosen uniformly among `ops` (default: the space's own); the child's
        hyperparameter genes are crossed from both parents whichever operator made its architecture."""
        ops = ops if ops is not None else self.crossovers()
        name = rng.choice(sorted(ops))
        child = ops[name](a, b, rng)
        if self.hparams is not None:
            child = replace(child, hparams=self.hparams.cross(a.hparams, b.hparams, rng))
        return child.anonymous(), name

    def key(self, genome: Genome) -> str:
        """Equal exactly when two genomes describe the same network (and hyperparameters)."""
        return f"{self.name}:{self.arch_key(genome)}{hparams_key(genome.hparams)}"

    def validate(self, genome: Genome, where: str = "genome") -> None:
        """Raise GenomeError (one line naming `where` and the field) unless legal here."""
        if genome.space != self.name:
            raise GenomeError(f"{where}: space: genome is for {short(genome.space)}, this run searches {self.name!r}")
        self.validate_arch(genome, where)
        if self.hparams is not None:
            self.hparams.validate(genome.hparams, where)
        elif genome.hparams is not None:
            raise GenomeError(f"{where}: hparams: present, but this run does not search hyperparameters")


@dataclass(frozen=True)
class SpaceEntry:
    """Everything evonas knows of one search space; `evo_nas.spaces.REGISTRY` holds one each."""

    name: str
    genome: type[Genome]
    space: type[SearchSpace]
    network: str  # the torch module whose build(genome, skeleton, dropout) makes its networks
    fitness: str  # what a run's accuracy objective is in this space, for help texts
    skeleton_fields: frozenset[str]  # the Skeleton settings that apply to its networks
    proxy: dict[str, dict] = field(default_factory=dict)  # device -> skeleton of the search proxy
    final: dict = field(default_factory=dict)  # the skeleton `evonas train` trains
    inspect: dict = field(default_factory=dict)  # the skeleton its published figures are quoted in
    # name -> another skeleton its networks are built in (`inspect/train --skeleton NAME`), with
    # the input_shape and classes `inspect` assumes there (train takes them from the data set)
    skeletons: dict[str, dict] = field(default_factory=dict)
