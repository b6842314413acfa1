"""The layer-wise space of Zoph & Le (2017): a stack of conv -> BN -> ReLU layers.   [stdlib only]

Each layer picks a filter height, width and count and the set of earlier states it reads
(state 0 is the image, state j+1 is layer j); several inputs are concatenated in depth.
Depth varies within bounds. Where the stride-2 reductions sit is a skeleton setting
(`reductions`): layer `depth * k // (reductions + 1)` reduces, for k = 1..reductions, the
same rule the cell skeleton uses for its reduction cells.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from evo_nas.canon import Node, canonical_form
from evo_nas.errors import GenomeError
from evo_nas.genome import Layer, LayerGenome
from evo_nas.spaces.base import SearchSpace


def reduction_layers(depth: int, reductions: int) -> frozenset[int]:
    """Indices of the layers that convolve with stride 2."""
    return frozenset(depth * k // (reductions + 1) for k in range(1, reductions + 1))


@dataclass(frozen=True)
class LayerSpace(SearchSpace):
    name = "layers"
    heights: tuple[int, ...] = (1, 3, 5, 7)
    widths: tuple[int, ...] = (1, 3, 5, 7)
    filters: tuple[int, ...] = (24, 36, 48, 64)
    min_layers: int = 3
    max_layers: int = 12
    reductions: int = 2
    skip_prob: float = 0.2  # chance that a sampled layer also reads a given earlier state

    def sample_arch(self, rng: random.Random) -> LayerGenome:
        depth = rng.randint(self.min_layers, self.max_layers)
        return LayerGenome(layers=tuple(self._sample_layer(i, rng) for i in range(depth)))

    def _sample_layer(self, i: int, rng: random.Random) -> Layer:
        # Always the previous state, plus skips: a chain with shortcuts, as the paper's nets.
        inputs = {i} | {j for j in range(i) if rng.random() < self.skip_prob}
        return Layer(rng.choice(self.heights), rng.choice(self.widths), rng.choice(self.filters),
                     tuple(sorted(inputs)))

    def mutations(self):
        return {"mut_kernel": self.mut_kernel, "mut_filters": self.mut_filters,
                "mut_add_input": mut_add_input, "mut_drop_input": mut_drop_input,
                "mut_insert_layer": self.mut_insert_layer,
                "mut_delete_layer": self.mut_delete_layer}

    def crossovers(self):
        return {"cx_uniform": cx_uniform_layers}

    def mut_kernel(self, genome: LayerGenome, rng: random.Random) -> LayerGenome:
        """A new filter height or width for one layer."""
        i = rng.randrange(len(genome.layers))
        layer = genome.layers[i]
        if rng.random() < 0.5:
            layer = replace(layer, height=_other(self.heights, layer.height, rng))
        else:
            layer = replace(layer, width=_other(self.widths, layer.width, rng))
        return _set_layer(genome, i, layer)

    def mut_filters(self, genome: LayerGenome, rng: random.Random) -> LayerGenome:
        i = rng.randrange(len(genome.layers))
        layer = genome.layers[i]
        return _set_layer(genome, i, replace(layer, filters=_other(self.filters, layer.filters, rng)))

    def mut_insert_layer(self, genome: LayerGenome, rng: random.Random) -> LayerGenome:
        if len(genome.layers) >= self.max_layers:
            return genome
        p = rng.randrange(len(genome.layers) + 1)
        new = Layer(rng.choice(self.heights), rng.choice(self.widths), rng.choice(self.filters), (p,))
        return insert_layer(genome, p, new)

    def mut_delete_layer(self, genome: LayerGenome, rng: random.Random) -> LayerGenome:
        if len(genome.layers) <= self.min_layers:
            return genome
        return delete_layer(genome, rng.randrange(len(genome.layers)))

    def arch_key(self, genome: LayerGenome) -> str:
        strided = reduction_layers(len(genome.layers), self.reductions)
        nodes = [Node("image", ())]
        for i, x in enumerate(genome.layers):
            label = f"{x.height}x{x.width}:{x.filters}{'/2' if i in strided else ''}"
            nodes.append(Node(label, tuple(("", s) for s in x.inputs)))
        return canonical_form(nodes)

    def validate_arch(self, genome: LayerGenome, where: str) -> None:
        validate_structure(genome, where)
        if not self.min_layers <= len(genome.layers) <= self.max_layers:
            raise GenomeError(f"{where}: layers: has {len(genome.layers)} layers, this space allows "
                              f"{self.min_layers}..{self.max_layers}")
        for i, layer in enumerate(genome.layers):
            for field, allowed in (("height", self.heights), ("width", self.widths),
                                   ("filters", self.filters)):
                if getattr(layer, field) not in allowed:
                    raise GenomeError(f"{where}: layers[{i}].{field}: {getattr(layer, field)} is not "
                                      f"one of {list(allowed)}")


def insert_layer(genome: LayerGenome, p: int, new: Layer) -> LayerGenome:
    """Insert `new` (which reads state p) into the chain at position p; the layer that
    followed reads the new layer instead. Other states keep their meaning (renumbered)."""
    layers = [*genome.layers[:p], new]
    for i, layer in enumerate(genome.layers[p:], start=p):
        shifted = {s + 1 if s > p or (s == p and i == p) else s for s in layer.inputs}
        layers.append(replace(layer, inputs=tuple(sorted(shifted))))
    return replace(genome, layers=tuple(layers))


def delete_layer(genome: LayerGenome, p: int) -> LayerGenome:
    """Delete layer p; its readers read its inputs instead."""
    gone = genome.layers[p]
    layers = list(genome.layers[:p])
    for layer in genome.layers[p + 1:]:
        inputs = set()
        for s in layer.inputs:
            if s == p + 1:
                inputs.update(gone.inputs)
            else:
                inputs.add(s - 1 if s > p + 1 else s)
        layers.append(replace(layer, inputs=tuple(sorted(inputs))))
    return replace(genome, layers=tuple(layers))


def mut_add_input(genome: LayerGenome, rng: random.Random) -> LayerGenome:
    """A layer also reads one more earlier state (a skip connection)."""
    options = [(i, s) for i, x in enumerate(genome.layers) for s in range(i + 1) if s not in x.inputs]
    if not options:
        return genome
    i, s = rng.choice(options)
    layer = genome.layers[i]
    return _set_layer(genome, i, replace(layer, inputs=tuple(sorted({*layer.inputs, s}))))


def mut_drop_input(genome: LayerGenome, rng: random.Random) -> LayerGenome:
    """A layer with several inputs stops reading one of them."""
    options = [(i, s) for i, x in enumerate(genome.layers) if len(x.inputs) > 1 for s in x.inputs]
    if not options:
        return genome
    i, s = rng.choice(options)
    layer = genome.layers[i]
    return _set_layer(genome, i, replace(layer, inputs=tuple(t for t in layer.inputs if t != s)))


def cx_uniform_layers(a: LayerGenome, b: LayerGenome, rng: random.Random) -> LayerGenome:
    """Layer i from either parent where both have one; the depth is the first parent's.
    Inputs stay valid because layer i only ever reads states 0..i."""
    layers = tuple(lb if i < len(b.layers) and rng.random() < 0.5 else la
                   for i, (la, lb) in enumerate(zip(a.layers, b.layers + a.layers[len(b.layers):])))
    return LayerGenome(layers=layers, hparams=a.hparams)


def _set_layer(genome: LayerGenome, i: int, layer: Layer) -> LayerGenome:
    return replace(genome, layers=genome.layers[:i] + (layer,) + genome.layers[i + 1:])


def _other(values: tuple[int, ...], current: int, rng: random.Random) -> int:
    options = [v for v in values if v != current]
    return rng.choice(options) if options else current


def validate_structure(genome: LayerGenome, where: str) -> None:
    for i, layer in enumerate(genome.layers):
        at = f"{where}: layers[{i}]"
        for field in ("height", "width", "filters"):
            if getattr(layer, field) < 1:
                raise GenomeError(f"{at}.{field}: must be positive, got {getattr(layer, field)}")
        for field in ("height", "width"):
            if getattr(layer, field) % 2 == 0:  # odd kernels keep 'same' padding symmetric
                raise GenomeError(f"{at}.{field}: must be odd, got {getattr(layer, field)}")
        if not layer.inputs:
            raise GenomeError(f"{at}.inputs: must name at least one state (0 is the image)")
        if len(set(layer.inputs)) != len(layer.inputs):
            raise GenomeError(f"{at}.inputs: duplicate input in {list(layer.inputs)}")
        if list(layer.inputs) != sorted(layer.inputs):
            raise GenomeError(f"{at}.inputs: must be sorted, got {list(layer.inputs)}")
        bad = [s for s in layer.inputs if not 0 <= s <= i]
        if bad:
            what = "points forward" if bad[0] > i else "is negative"
            raise GenomeError(f"{at}.inputs: state {bad[0]} {what}; layer {i} may read states 0..{i}")
