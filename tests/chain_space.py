"""A fourth search space, added the way the README's "Extending evonas" says: one module with the
genome type, its rules and operators, its network and its registry entry. (evonas's own spaces
keep the network in evo_nas/nets/ so that the space modules stay torch-free; a space of one's
own may keep both in one file, as here.)"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import torch
from torch import nn

from evo_nas.errors import GenomeError
from evo_nas.genome import Genome, int_list
from evo_nas.nets import Network, head
from evo_nas.spaces.base import SearchSpace, SpaceEntry, option


@dataclass(frozen=True)
class ChainGenome(Genome):
    """A chain of 3x3 conv-BN-ReLU layers; the genes are their widths."""

    space = "chain"
    BODY = ("widths",)
    widths: tuple[int, ...]

    def body(self) -> dict:
        return {"widths": list(self.widths)}

    @classmethod
    def from_body(cls, d: dict, where: str, **meta) -> ChainGenome:
        return cls(widths=tuple(int_list(d["widths"], where, "widths")), **meta)

    def check(self, where: str) -> None:
        if not self.widths or min(self.widths) < 1:
            raise GenomeError(f"{where}: widths: must be positive, got {list(self.widths)}")

    def describe(self) -> str:
        return "-".join(map(str, self.widths))

    def body_lines(self) -> list[str]:
        return [f"widths: [{', '.join(map(str, self.widths))}]"]


@dataclass(frozen=True)
class ChainSpace(SearchSpace):
    name = "chain"
    choices: tuple[int, ...] = option((2, 4, 6), "chain: the widths a layer may have")
    length: int = option(3, "chain: layers in the chain")

    def sample_arch(self, rng: random.Random) -> ChainGenome:
        return ChainGenome(widths=tuple(rng.choice(self.choices) for _ in range(self.length)))

    def mutations(self):
        return {"mut_width": self.mut_width}

    def crossovers(self):
        return {"cx_uniform": lambda a, b, rng: replace(a, widths=tuple(
            x if rng.random() < 0.5 else y for x, y in zip(a.widths, b.widths)))}

    def mut_width(self, genome: ChainGenome, rng: random.Random) -> ChainGenome:
        i = rng.randrange(len(genome.widths))
        new = rng.choice([w for w in self.choices if w != genome.widths[i]])
        return replace(genome, widths=genome.widths[:i] + (new,) + genome.widths[i + 1:])

    def arch_key(self, genome: ChainGenome) -> str:
        return genome.describe()

    def validate_arch(self, genome: ChainGenome, where: str) -> None:
        genome.check(where)
        if len(genome.widths) != self.length or any(w not in self.choices for w in genome.widths):
            raise GenomeError(f"{where}: widths: not a chain of this space")


class ChainNetwork(Network):
    def __init__(self, genome: ChainGenome, skeleton, dropout: float):
        super().__init__()
        layers, channels = [], skeleton.input_shape[0]
        for width in genome.widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            channels = width
        self.body = nn.Sequential(*layers)
        self.classifier = head(channels, skeleton.classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x).mean(dim=(2, 3)))


def build(genome: ChainGenome, skeleton, dropout: float) -> Network:
    return ChainNetwork(genome, skeleton, dropout)


ENTRY = SpaceEntry(name="chain", genome=ChainGenome, space=ChainSpace, network="tests.chain_space",
                   fitness="validation accuracy of the chain after the brief proxy training",
                   skeleton_fields=frozenset({"dropout"}))
