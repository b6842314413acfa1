"""What every search space offers: sample, mutate, cross, validate, key.   [stdlib only]

A space is a frozen config object. Its operators are plain functions of (genome(s), rng) that
return a valid child and the operator's name (`mut_*`, `cx_*`), which the journal records as
the child's provenance. Architecture operators come from the subclass; the hyperparameter gene
operators are shared here.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

from evo_nas.genome import Genome
from evo_nas.spaces.hparams import HParamSpace, hparams_key

Mutation = Callable[[Genome, random.Random], Genome]
Crossover = Callable[[Genome, Genome, random.Random], Genome]


@dataclass(frozen=True)
class SearchSpace:
    name = "base"
    hparams: HParamSpace | None = None

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

    # -- shared -------------------------------------------------------------------------
    def sample(self, rng: random.Random) -> Genome:
        genome = self.sample_arch(rng)
        if self.hparams is not None:
            genome = replace(genome, hparams=self.hparams.sample(rng))
        return genome

    def mutate(self, genome: Genome, rng: random.Random) -> tuple[Genome, str]:
        """One mutation, chosen uniformly among the space's operators (and the hparam one)."""
        ops = dict(self.mutations())
        if self.hparams is not None:
            ops["mut_hparams"] = lambda g, r: replace(g, hparams=self.hparams.mutate(g.hparams, r))
        name = rng.choice(sorted(ops))
        return ops[name](genome, rng).anonymous(), name

    def crossover(self, a: Genome, b: Genome, rng: random.Random) -> tuple[Genome, str]:
        ops = self.crossovers()
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
        from evo_nas.errors import GenomeError

        if genome.space != self.name:
            raise GenomeError(f"{where}: space: genome is for {genome.space!r}, this run searches {self.name!r}")
        self.validate_arch(genome, where)
        if self.hparams is not None:
            self.hparams.validate(genome.hparams, where)
        elif genome.hparams is not None:
            raise GenomeError(f"{where}: hparams: present, but this run does not search hyperparameters")
