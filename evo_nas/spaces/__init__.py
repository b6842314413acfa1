"""The search spaces, one registry entry each: name -> genome type, operators, network, skeletons.   [stdlib]

A new space is a module beside these (its genome type, rules, operators and `ENTRY`), a
network module under `evo_nas.nets`, and one more name in the tuple below.
"""

from __future__ import annotations

from evo_nas.errors import ConfigError, short
from evo_nas.genome import Genome, from_dict
from evo_nas.spaces import cells, layers, nb201
from evo_nas.spaces.base import SearchSpace, SpaceEntry

REGISTRY: dict[str, SpaceEntry] = {entry.name: entry for entry in (cells.ENTRY, layers.ENTRY, nb201.ENTRY)}
NAMES = tuple(REGISTRY)


def entry(name: str) -> SpaceEntry:
    if name not in REGISTRY:
        raise ConfigError(f"space: must be one of {', '.join(REGISTRY)}, got {short(name)}")
    return REGISTRY[name]


def of(genome: Genome) -> SpaceEntry:
    return REGISTRY[genome.space]


def parse_genome(data: object, where: str = "genome") -> Genome:
    """A plain dict (from a file or the journal) -> a genome that follows its kind's rules."""
    genome = from_dict({name: e.genome for name, e in REGISTRY.items()}, data, where)
    genome.check(where)
    return genome


__all__ = ["REGISTRY", "NAMES", "SearchSpace", "SpaceEntry", "entry", "of", "parse_genome"]
