"""Genome + skeleton -> nn.Module: one function, `build`, as DARTS' `model.py`.   [torch]

The network of each space is in its module under `evo_nas.nets`, found through the space's
registry entry; a genome's `hparams.dropout` overrides `skeleton.dropout`.
"""

from __future__ import annotations

import importlib

from evo_nas import spaces
from evo_nas.config import Skeleton
from evo_nas.errors import ConfigError
from evo_nas.genome import Genome
from evo_nas.nets import Network


def build(genome: Genome, skeleton: Skeleton = Skeleton()) -> Network:
    """The network `genome` describes, inside `skeleton`, on the CPU, in training mode."""
    entry = spaces.of(genome)
    for name in ("auxiliary", "drop_path"):
        if getattr(skeleton, name) and name not in entry.skeleton_fields:
            raise ConfigError(f"skeleton: {name} applies to cell genomes only, not to the {genome.space!r} space")
    dropout = genome.hparams.dropout if genome.hparams is not None else skeleton.dropout
    return importlib.import_module(entry.network).build(genome, skeleton, dropout)
