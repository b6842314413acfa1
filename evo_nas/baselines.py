"""A network as a person designs one, to measure searched networks against: the lecture's form,
written as a genome of the layer space.   [torch, for counting]

conv 3x3 -> BN -> ReLU, two layers a stage, the filters doubled at each stride-2 layer (the
layer space's skeleton puts one at the start of each stage after the first), global average
pooling, a linear classifier; the width is the one whose parameter count is nearest to a
target, so that the baseline is compared with searched networks of its own size.
"""

from __future__ import annotations

from collections.abc import Callable

from evo_nas.config import Skeleton
from evo_nas.spaces.base import reduction_layers
from evo_nas.spaces.layers import Layer, LayerGenome

LAYERS_PER_STAGE = 2
WIDEST = 1024  # first-stage filters tried: 1 .. WIDEST


def hand_designed(params: float, skeleton_of: Callable[[LayerGenome], Skeleton]) -> LayerGenome:
    """The hand-designed network whose parameter count (in the skeleton `skeleton_of` gives it)
    is nearest to `params` (the count grows with the width: bisection)."""
    from evo_nas.evaluate.count import count

    reductions = skeleton_of(chain(4)).reductions

    def size(width: int) -> int:
        genome = chain(width, reductions)
        return count(genome, skeleton_of(genome)).params

    low, high = 1, WIDEST  # the widest with size <= params lies in [low, high]
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if size(mid) <= params else (low, mid - 1)
    width = min((low, min(low + 1, WIDEST)), key=lambda w: abs(size(w) - params))
    return chain(width, reductions)


def chain(width: int, reductions: int = 2) -> LayerGenome:
    """conv 3x3 layers, LAYERS_PER_STAGE a stage, each reading the one before, `width` filters
    in the first stage and twice as many after every stride-2 layer."""
    depth = LAYERS_PER_STAGE * (reductions + 1)
    strided = reduction_layers(depth, reductions)
    layers, filters = [], width
    for i in range(depth):
        filters *= 2 if i in strided else 1
        layers.append(Layer(3, 3, filters, (i,)))
    return LayerGenome(layers=tuple(layers), name=f"hand-designed conv-BN-ReLU, {width} filters doubling",
                       source="evonas.baselines: the lecture's hand-designed form")
