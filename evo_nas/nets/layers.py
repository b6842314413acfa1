"""The layer space's network (Zoph & Le 2017): a stack of conv -> BN -> ReLU layers.   [torch]

No stem; state 0 is the image. Layer i convolves the depth concat of its inputs (height x
width, `filters`, padding (k-1)//2 per axis, no bias, stride 2 when i is in
`reduction_layers(depth, skeleton.reductions)`), then BN, ReLU. Inputs of different sizes meet
at the smallest among them: larger ones are average-pooled down to it. The head global-average-
pools every layer output that no layer reads, separately, concatenates them, standardises them
(BatchNorm without affine parameters) -> dropout -> Linear.

Two departures from a literal reading of the paper, both measured (docs/layers.md): the paper
zero-pads smaller inputs up to the largest, which puts a 7x7 map into one corner of a 28x28
one and leaves everything after such a layer at full resolution (2-4x the MACs; 5 of 6 such
genomes trained 5-11 points worse); and the pooled ReLU features reach the classifier
standardised, without which the brief proxy training left the classifier near chance.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evo_nas.config import Skeleton
from evo_nas.nets import Network, head
from evo_nas.spaces.base import reduction_layers
from evo_nas.spaces.layers import LayerGenome

Size = tuple[int, int]


def build(genome: LayerGenome, skeleton: Skeleton, dropout: float) -> Network:
    return LayerNetwork(genome, skeleton, dropout)


class LayerModule(nn.Module):
    """conv -> BN -> ReLU over the depth concat of some earlier states, each pooled to one size."""

    def __init__(self, inputs: tuple[int, ...], pools: tuple[Size | None, ...], C_in: int, filters: int,
                 kernel: Size, stride: int):
        super().__init__()
        self.inputs, self.pools = inputs, pools  # per input: None, or the (H, W) to pool it down to
        padding = ((kernel[0] - 1) // 2, (kernel[1] - 1) // 2)
        self.conv = nn.Conv2d(C_in, filters, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(filters)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, states: list[torch.Tensor]) -> torch.Tensor:
        xs = [states[s] if size is None else F.adaptive_avg_pool2d(states[s], size)
              for s, size in zip(self.inputs, self.pools)]
        x = xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)
        return self.relu(self.bn(self.conv(x)))


class LayerNetwork(Network):
    def __init__(self, genome: LayerGenome, sk: Skeleton, dropout: float):
        super().__init__()
        strided = reduction_layers(len(genome.layers), sk.reductions)
        channels, sizes = [sk.input_shape[0]], [tuple(sk.input_shape[1:])]  # per state
        layers = []
        for i, layer in enumerate(genome.layers):
            # Every size is the image's halved k times (ceil), so the smallest is smallest on both axes.
            size = min(sizes[s] for s in layer.inputs)
            pools = tuple(None if sizes[s] == size else size for s in layer.inputs)
            stride = 2 if i in strided else 1
            layers.append(LayerModule(layer.inputs, pools, sum(channels[s] for s in layer.inputs),
                                      layer.filters, (layer.height, layer.width), stride))
            channels.append(layer.filters)
            sizes.append(_conv_size(size, (layer.height, layer.width), stride))
        self.layers = nn.ModuleList(layers)
        read = {s for layer in genome.layers for s in layer.inputs}
        self.outputs = tuple(s for s in range(1, len(genome.layers) + 1) if s not in read)
        features = sum(channels[s] for s in self.outputs)
        # Pooled ReLU outputs share a large positive offset and differ little between images;
        # standardised, one learning rate trains every genome's classifier (the Linear after it
        # makes affine parameters here redundant).
        self.norm = nn.BatchNorm1d(features, affine=False)
        self.classifier = head(features, sk.classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for layer in self.layers:
            states.append(layer(states))
        features = torch.cat([states[s].mean(dim=(2, 3)) for s in self.outputs], dim=1)
        return self.classifier(self.norm(features))


def _conv_size(size: Size, kernel: Size, stride: int) -> Size:
    return tuple((n + 2 * ((k - 1) // 2) - k) // stride + 1 for n, k in zip(size, kernel))
