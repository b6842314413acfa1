"""The NAS-Bench-201 space's network: the benchmark's TinyNetwork.   [torch]

C = `init_channels`, N = `depth` cells per stage. Every edge that is not `none` is built, also
one that cannot reach node 3, so counts match the benchmark's. One choice of ours: the basic
block's shortcut pools with ceil_mode, which is the same at even sizes and keeps both paths the
same size on odd maps (7x7 from 28x28).
"""

from __future__ import annotations

import torch
from torch import nn

from evo_nas.config import Skeleton
from evo_nas.nets import Network, head
from evo_nas.ops import NB201_OPS_TABLE, ReLUConvBN
from evo_nas.spaces.nb201 import EDGES, NB201Genome


def build(genome: NB201Genome, skeleton: Skeleton, dropout: float) -> Network:
    return NB201Network(genome, skeleton, dropout)


class NB201Cell(nn.Module):
    """node_j = sum_i op_ij(node_i) over the edges that are not `none`; returns node 3."""

    def __init__(self, edges: tuple[str, ...], C: int):
        super().__init__()
        self.ops = nn.ModuleList()
        incoming: dict[int, list[tuple[int, int]]] = {1: [], 2: [], 3: []}  # node -> (op index, source)
        for op, (src, dst) in zip(edges, EDGES):
            if op != "none":  # a `none` edge adds zeros: leave it out
                incoming[dst].append((len(self.ops), src))
                self.ops.append(NB201_OPS_TABLE[op](C, 1, True))
        self.incoming = tuple(tuple(incoming[j]) for j in (1, 2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for edges in self.incoming:
            if not edges:  # every incoming edge is `none`
                nodes.append(torch.zeros_like(x))
                continue
            total = self.ops[edges[0][0]](nodes[edges[0][1]])
            for k, src in edges[1:]:
                total = total + self.ops[k](nodes[src])
            nodes.append(total)
        return nodes[3]


class ResNetBasicBlock(nn.Module):
    """NB201's stage transition: ReLUConvBN(3x3, stride 2) -> ReLUConvBN(3x3), plus a shortcut
    AvgPool(2, 2) -> Conv1x1 (no BN)."""

    def __init__(self, C_in: int, C_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(C_in, C_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(C_out, C_out, 3, 1, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, stride=2, ceil_mode=True),
                                        nn.Conv2d(C_in, C_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.downsample(x)


class NB201Network(Network):
    def __init__(self, genome: NB201Genome, sk: Skeleton, dropout: float):
        super().__init__()
        C, N = sk.init_channels, sk.depth
        self.stem = nn.Sequential(nn.Conv2d(sk.input_shape[0], C, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(C))
        cells: list[nn.Module] = []
        for stage, width in enumerate((C, 2 * C, 4 * C)):
            if stage:
                cells.append(ResNetBasicBlock(width // 2, width))
            cells.extend(NB201Cell(genome.edges, width) for _ in range(N))
        self.cells = nn.Sequential(*cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU(inplace=False))
        self.classifier = head(4 * C, sk.classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(x.mean(dim=(2, 3)))
