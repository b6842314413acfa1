"""The layer space's network (Zoph & Le 2017): a stack of conv -> BN -> ReLU layers.   [torch]

No stem; state 0 is the image. Layer i convolves the depth concat of its inputs (height x
width, `filters`, padding (k-1)//2 per axis, no bias, stride 2 when i is in
`reduction_layers(depth, skeleton.reductions)`), then BN, ReLU. Inputs smaller than the largest
among them are zero-padded at the bottom/right, as the paper pads. The head global-average-pools
every layer output that no layer reads, separately, and concatenates them -> dropout -> Linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evo_nas.config import Skeleton
from evo_nas.nets import Network, head
from evo_nas.spaces.base import reduction_layers
from evo_nas.spaces.layers import LayerGenome


def build(genome: LayerGenome, skeleton: Skeleton, dropout: float) -> Network:
    return LayerNetwork(genome, skeleton, dropout)


class LayerModule(nn.Module):
    """conv -> BN -> ReLU over the depth concat of some earlier states, zero-padded to one size."""

    def __init__(self, inputs: tuple[int, ...], pads: tuple[tuple[int, int, int, int] | None, ...],
                 C_in: int, filters: int, kernel: tuple[int, int], stride: int):
        super().__init__()
        self.inputs, self.pads = inputs, pads
        padding = ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
        self.conv = nn.Conv2d(C_in, filters, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(filters)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        xs = [states[s] if pad is None else F.pad(states[s], pad) for s, pad in zip(self.inputs, self.pads)]
        x = xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)
        return self.relu(self.bn(self.conv(x)))


class LayerNetwork(Network):
    def __init__(self, genome: LayerGenome, sk: Skeleton, dropout: float):
        super().__init__()
        strided = reduction_layers(len(genome.layers), sk.reductions)
        channels, sizes = [sk.input_shape[0]], [sk.input_shape[1:]]  # per state
        layers = []
        for i, layer in enumerate(genome.layers):
            h = max(sizes[s][0] for s in layer.inputs)
            w = max(sizes[s][1] for s in layer.inputs)
            # F.pad order: (left, right, top, bottom); pad only what is smaller.
            pads = tuple(None if sizes[s] == (h, w) else (0, w - sizes[s][1], 0, h - sizes[s][0])
                         for s in layer.inputs)
            stride = 2 if i in strided else 1
            layers.append(LayerModule(layer.inputs, pads, sum(channels[s] for s in layer.inputs),
                                      layer.filters, (layer.height, layer.width), stride))
            channels.append(layer.filters)
            sizes.append(_conv_size((h, w), (layer.height, layer.width), stride))
        self.layers = nn.ModuleList(layers)
        read = {s for layer in genome.layers for s in layer.inputs}
        self.outputs = tuple(s for s in range(1, len(genome.layers) + 1) if s not in read)
        self.classifier = head(sum(channels[s] for s in self.outputs), sk.classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for layer in self.layers:
            states.append(layer(states))
        features = torch.cat([states[s].mean(dim=(2, 3)) for s in self.outputs], dim=1)
        return self.classifier(features)


def _conv_size(size: tuple[int, int], kernel: tuple[int, int], stride: int) -> tuple[int, int]:
    return tuple((n + 2 * ((k - 1) // 2) - k) // stride + 1 for n, k in zip(size, kernel))
