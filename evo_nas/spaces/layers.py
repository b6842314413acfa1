"""The layer-wise space of Zoph & Le (2017): a stack of conv -> BN -> ReLU layers.   [stdlib only]

Each layer picks a filter height, width and count and the set of earlier states it reads
(state 0 is the image, state j+1 is layer j); several inputs are concatenated in depth.
Depth varies within bounds. Where the stride-2 reductions sit is a skeleton setting
(`reductions`): layer `depth * k // (reductions + 1)` reduces, for k = 1..reductions, the
same rule the cell skeleton uses for its reduction cells.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, replace

from evo_nas.canon import Node, canonical_form
from evo_nas.errors import ConfigError, GenomeError, short
from evo_nas.genome import LIMITS, Genome, at_most, int_list, is_int, mapping, no_unknown_keys
from evo_nas.spaces.base import SearchSpace, SpaceEntry, option, reduction_layers


@dataclass(frozen=True)
class Layer:
    """conv(height x width, filters) -> BN -> ReLU over the depth-concat of `inputs`."""

    height: int
    width: int
    filters: int
    inputs: tuple[int, ...]  # sorted states: 0 is the image, j+1 is layer j


@dataclass(frozen=True)
class LayerGenome(Genome):
    space = "layers"
    BODY = ("layers",)
    layers: tuple[Layer, ...]

    def body(self) -> dict:
        return {"layers": [{"height": x.height, "width": x.width, "filters": x.filters, "inputs": list(x.inputs)}
                           for x in self.layers]}

    @classmethod
    def from_body(cls, d: dict, where: str, **meta) -> LayerGenome:
        return cls(layers=_layers(d["layers"], where), **meta)

    def check(self, where: str) -> None:
        validate_structure(self, where)

    def describe(self) -> str:
        return " ".join(f"{x.height}x{x.width}:{x.filters}<{','.join(map(str, x.inputs))}" for x in self.layers)

    def structure(self, reductions: int) -> dict[str, str]:
        return {"stride 2": f"layers {sorted(reduction_layers(len(self.layers), reductions))}"}

    def body_lines(self) -> list[str]:
        return ["layers:"] + [f"- {{height: {x.height}, width: {x.width}, filters: {x.filters}, "
                              f"inputs: [{', '.join(map(str, x.inputs))}]}}" for x in self.layers]


@dataclass(frozen=True)
class LayerSpace(SearchSpace):
    name = "layers"
    kernel_sizes: tuple[int, ...] = option((1, 3, 5, 7), "layers: filter heights and widths (Zoph & Le)")
    filter_counts: tuple[int, ...] = option((24, 36, 48, 64), "layers: filters per layer (Zoph & Le)")
    min_layers: int = option(3, "layers: least depth")
    max_layers: int = option(10, "layers: most depth")
    skip_prob: float = option(0.2, "layers: chance that a sampled layer also reads a given earlier state")
    # Where the stride-2 layers sit is the skeleton's (`reductions`); the key depends on it.
    reductions: int = dataclasses.field(default=2, metadata={"cli": False})

    @property
    def heights(self) -> tuple[int, ...]:
        return self.kernel_sizes

    widths = heights

    @property
    def filters(self) -> tuple[int, ...]:
        return self.filter_counts

    def check_options(self) -> None:
        if not self.kernel_sizes or any(k <= 0 or k % 2 == 0 for k in self.kernel_sizes):
            raise ConfigError(f"kernel_sizes: must be odd positive sizes, got {short(list(self.kernel_sizes))}")
        if not self.filter_counts or any(f <= 0 for f in self.filter_counts):
            raise ConfigError(f"filter_counts: must be positive counts, got {short(list(self.filter_counts))}")
        if self.min_layers < 1:
            raise ConfigError(f"min_layers: must be positive, got {short(self.min_layers)}")
        if self.min_layers > self.max_layers:
            raise ConfigError(f"min_layers: {short(self.min_layers)} is above max_layers {short(self.max_layers)}")
        if not 0 <= self.skip_prob <= 1:
            raise ConfigError(f"skip_prob: must be between 0 and 1, got {short(self.skip_prob)}")
        for name, values, limit in (("kernel_sizes", self.kernel_sizes, "kernel"),
                                    ("filter_counts", self.filter_counts, "filters"),
                                    ("max_layers", (self.max_layers,), "layers")):
            if max(values) > LIMITS[limit]:
                raise ConfigError(f"{name}: {max(values)} is more than evonas allows ({LIMITS[limit]:,} {limit})")

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
        genome.check(where)
        if not self.min_layers <= len(genome.layers) <= self.max_layers:
            raise GenomeError(f"{where}: layers: has {len(genome.layers)} layers, this space allows "
                              f"{self.min_layers}..{self.max_layers}")
        for i, layer in enumerate(genome.layers):
            for field, allowed in (("height", self.heights), ("width", self.widths),
                                   ("filters", self.filters)):
                if getattr(layer, field) not in allowed:
                    raise GenomeError(f"{where}: layers[{i}].{field}: {short(getattr(layer, field))} is not "
                                      f"one of {list(allowed)}")

    # -- the flat integer encoding: a variable-length list of per-layer genes ---------------
    # Per layer [height, width, filters, read_1 .. read_M] with M = max_layers: indices into
    # the space's sizes, and read_d = 1 when the layer reads the state d back (d = 1: the
    # previous layer's output). Relative inputs keep their meaning wherever a crossover moves
    # a layer; reads before the image are ignored, and a layer that reads nothing reads the
    # previous state, so every list of whole layers decodes to a valid genome.
    def gene_unit(self) -> int:
        return 3 + self.max_layers

    def encode(self, genome: LayerGenome) -> list[int]:
        genes = []
        for i, x in enumerate(genome.layers):
            reads = [int(i + 1 - d in x.inputs) for d in range(1, self.max_layers + 1)]
            genes += [self.heights.index(x.height), self.widths.index(x.width), self.filters.index(x.filters), *reads]
        return genes

    def decode(self, genes: list[int], like: LayerGenome) -> LayerGenome:
        unit, layers = self.gene_unit(), []
        for i in range(len(genes) // unit):
            h, w, f, *reads = genes[i * unit:(i + 1) * unit]
            inputs = tuple(sorted(i + 1 - d for d, bit in enumerate(reads, start=1) if bit and d <= i + 1))
            layers.append(Layer(self.heights[h], self.widths[w], self.filters[f], inputs or (i,)))
        return LayerGenome(layers=tuple(layers), hparams=like.hparams)

    def gene_bounds(self, length: int) -> tuple[list[int], list[int]]:
        up = [len(self.heights) - 1, len(self.widths) - 1, len(self.filters) - 1] + [1] * self.max_layers
        return [0] * length, (up * (length // len(up) + 1))[:length]

    def unit_bounds(self) -> tuple[int, int]:
        return self.min_layers, self.max_layers


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
    at_most(len(genome.layers), "layers", f"{where}: layers")
    for i, layer in enumerate(genome.layers):
        at = f"{where}: layers[{i}]"
        for field in ("height", "width", "filters"):
            if getattr(layer, field) < 1:
                raise GenomeError(f"{at}.{field}: must be positive, got {short(getattr(layer, field))}")
            at_most(getattr(layer, field), "filters" if field == "filters" else "kernel", f"{at}.{field}")
        for field in ("height", "width"):
            if getattr(layer, field) % 2 == 0:  # odd kernels keep 'same' padding symmetric
                raise GenomeError(f"{at}.{field}: must be odd, got {short(getattr(layer, field))}")
        if not layer.inputs:
            raise GenomeError(f"{at}.inputs: must name at least one state (0 is the image)")
        if len(set(layer.inputs)) != len(layer.inputs):
            raise GenomeError(f"{at}.inputs: duplicate input in {short(list(layer.inputs))}")
        if list(layer.inputs) != sorted(layer.inputs):
            raise GenomeError(f"{at}.inputs: must be sorted, got {short(list(layer.inputs))}")
        bad = [s for s in layer.inputs if not 0 <= s <= i]
        if bad:
            what = "points forward" if bad[0] > i else "is negative"
            raise GenomeError(f"{at}.inputs: state {bad[0]} {what}; layer {i} may read states 0..{i}")


def _layers(data: object, where: str) -> tuple[Layer, ...]:
    if not isinstance(data, list) or not data:
        raise GenomeError(f"{where}: layers: must be a non-empty list of layers")
    out = []
    for i, item in enumerate(data):
        at = f"layers[{i}]"
        d = mapping(item, where, at)
        no_unknown_keys(d, {"height", "width", "filters", "inputs"}, where, at)
        for key in ("height", "width", "filters"):
            if not is_int(d.get(key)):
                raise GenomeError(f"{where}: {at}.{key}: must be an integer, got {short(d.get(key))}")
        inputs = int_list(d.get("inputs"), where, f"{at}.inputs")
        out.append(Layer(height=d["height"], width=d["width"], filters=d["filters"], inputs=tuple(inputs)))
    return tuple(out)


ENTRY = SpaceEntry(
    name="layers", genome=LayerGenome, space=LayerSpace, network="evo_nas.nets.layers",
    fitness="validation accuracy of the layer stack itself (it sets its own widths and depth), after the brief "
            "proxy training",
    skeleton_fields=frozenset({"reductions", "dropout"}),
    # CPU (docs/layers.md; BENCHMARKS.md, "The layer space's CPU proxy"): 8 genomes of tuning seed
    # 1000 with the network that pools mixed sizes down and standardises the classifier's input.
    # - train_limit 4,500: 1,200 images (19 steps) left the median at 0.62, 3,000 at 0.73-0.75,
    #   4,500 at 0.76-0.77 (0.764 over the 16 genomes of seed 0: the shipped table). The networks
    #   cost a third of what they did, so this is 1.4x the cells proxy's CPU time per evaluation
    #   (20.5 s against 15.0 s, mean of 8 genomes each, the same loaded sitting).
    # - batch_size 32: twice the steps for the same images and the same CPU time (+2 points of
    #   median at 3,000 images; batch 16 no better); lr stays the preset's 0.4 per 256 (0.2 and 0.8
    #   tied with it once the classifier's input is standardised).
    # - val_limit none: the whole validation split (6,000 images), as the cells proxy: even so
    #   63% of an evaluation's noise is the validation set's binomial noise (2,000 images would
    #   save ~30% of the time and about triple that part).
    # GPU: the presets' image budget, unmeasured for this space.
    proxy={"cpu": {"train_limit": 4500, "batch_size": 32, "val_limit": None}},
)
