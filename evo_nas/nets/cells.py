"""The cell space's network: DARTS' NetworkCIFAR, and with `skeleton.stem == "imagenet"` its
NetworkImageNet (docs/reference-cells.md, and docs/design.md for what we build differently).   [torch]
"""

from __future__ import annotations

import torch
from torch import nn

from evo_nas.config import CIFAR_STEM_MAX, Skeleton
from evo_nas.errors import ConfigError
from evo_nas.nets import Network, halve, head
from evo_nas.ops import OPS, DropPath, FactorizedReduce, ReLUConvBN
from evo_nas.spaces.base import reduction_layers
from evo_nas.spaces.cells import Cell, CellGenome, live_states


def build(genome: CellGenome, skeleton: Skeleton, dropout: float) -> Network:
    return CellNetwork(genome, skeleton, dropout)


class CellModule(nn.Module):
    """One cell: (s0 from cell k-2, s1 from cell k-1) -> concat of the output states."""

    def __init__(self, cell: Cell, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool,
                 drop_path: float):
        super().__init__()
        live = live_states(cell)
        pre0 = FactorizedReduce(C_pp, C) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0)
        self.preprocess0 = pre0 if 0 in live else None
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0) if 1 in live else None
        self.ops = nn.ModuleList()
        plan = []  # (state made, input of ops[2k], input of ops[2k+1]) for each live block
        for i, block in enumerate(cell.blocks):
            if i + 2 not in live:
                continue
            for branch in block.branches:
                stride = 2 if reduction and branch.input < 2 else 1
                self.ops.append(OPS[branch.op](C, stride, True))
            plan.append((i + 2, block.left.input, block.right.input))
        self.plan = tuple(plan)
        self.concat = cell.output_states()
        self.n_states = len(cell.blocks) + 2
        # Which ops drop path wraps: all but identities, as DARTS.
        self.drop = DropPath(drop_path) if drop_path > 0 else None
        self.dropped = tuple(not isinstance(op, nn.Identity) for op in self.ops)

    def forward(self, s0: torch.Tensor | None, s1: torch.Tensor | None) -> torch.Tensor:
        states: list[torch.Tensor | None] = [None] * self.n_states
        if self.preprocess0 is not None:
            states[0] = self.preprocess0(s0)
        if self.preprocess1 is not None:
            states[1] = self.preprocess1(s1)
        for k, (out, a, b) in enumerate(self.plan):
            states[out] = self._branch(2 * k, states[a]) + self._branch(2 * k + 1, states[b])
        return torch.cat([states[s] for s in self.concat], dim=1)

    def _branch(self, i: int, x: torch.Tensor) -> torch.Tensor:
        h = self.ops[i](x)
        if self.drop is not None and self.dropped[i]:
            h = self.drop(h)
        return h


class DeadCell(nn.Module):
    """A cell no live part of the network reads: nothing is built, nothing is computed."""

    def forward(self, s0, s1):
        return None


class AuxiliaryHead(nn.Sequential):
    """DARTS' auxiliary head on a (N, C, H, W) map -> (N, classes): AuxiliaryHeadCIFAR, or with
    `imagenet` AuxiliaryHeadImageNet (pool stride 2, and no BN after the 768-channel conv, as in
    DARTS' ImageNet experiments); see the module doc."""

    def __init__(self, C: int, size: tuple[int, int], classes: int, imagenet: bool = False):
        stride = 2 if imagenet else 3
        darts_pool = all((s - 5) // stride + 1 == 2 for s in size)  # AvgPool(5, stride) -> 2x2 exactly there
        pool = (nn.AvgPool2d(5, stride=stride, padding=0, count_include_pad=False) if darts_pool
                else nn.AdaptiveAvgPool2d(2))
        bn = [] if imagenet else [nn.BatchNorm2d(768)]
        super().__init__(
            nn.ReLU(inplace=False), pool,
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False), *bn, nn.ReLU(inplace=False),
            nn.Flatten(), nn.Linear(768, classes),
        )


class CellNetwork(Network):
    """DARTS' NetworkCIFAR, or with `sk.stem == "imagenet"` its NetworkImageNet."""

    def __init__(self, genome: CellGenome, sk: Skeleton, dropout: float):
        super().__init__()
        C = sk.init_channels
        if sk.stem == "cifar" and max(sk.input_shape[1:]) > CIFAR_STEM_MAX:
            size = "x".join(map(str, sk.input_shape))
            raise ConfigError(f"input_shape: {size} images need stem imagenet (--stem imagenet, or in inspect and "
                              f"train --skeleton imagenet): the cifar stem keeps the full resolution, for "
                              f"images up to {CIFAR_STEM_MAX} px")
        self.two_stems = sk.stem == "imagenet"
        if self.two_stems:
            self.stem0, self.stem1 = imagenet_stems(sk.input_shape[0], C)
            C_pp, C_p, reduction_prev = C, C, True  # s0 at 1/4 of the input, s1 at 1/8
            size = halve(halve(halve(sk.input_shape[1:])))
        else:
            C_pp = C_p = sk.stem_multiplier * C
            self.stem = nn.Sequential(nn.Conv2d(sk.input_shape[0], C_p, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(C_p))
            reduction_prev, size = False, sk.input_shape[1:]
        reduce_at = reduction_layers(sk.depth, sk.reductions)
        self.aux_at = 2 * sk.depth // 3 if sk.auxiliary else -1
        live = _live_cells(genome, sk.depth, reduce_at, self.aux_at)
        cells = []
        for i in range(sk.depth):
            reduction = i in reduce_at
            if reduction:
                C, size = 2 * C, halve(size)
            cell = genome.reduce if reduction else genome.normal
            cells.append(CellModule(cell, C_pp, C_p, C, reduction, reduction_prev, sk.drop_path)
                         if i in live else DeadCell())
            C_pp, C_p, reduction_prev = C_p, len(cell.output_states()) * C, reduction
            if i == self.aux_at:
                self.auxiliary_head = AuxiliaryHead(C_p, size, sk.classes, imagenet=self.two_stems)
        self.cells = nn.ModuleList(cells)
        self.classifier = head(C_p, sk.classes, dropout)
        self.drop_path_max = self._drop_path_prob = sk.drop_path

    def forward(self, x: torch.Tensor):
        if self.two_stems:
            s0 = self.stem0(x)
            s1 = self.stem1(s0)
        else:
            s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_at and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(s1.mean(dim=(2, 3)))
        return logits if aux is None else (logits, aux)


def imagenet_stems(C_in: int, C: int) -> tuple[nn.Sequential, nn.Sequential]:
    """DARTS' NetworkImageNet stems: stem0 (conv 3x3 s2 to C/2, BN, ReLU, conv 3x3 s2 to C, BN)
    makes s0 at 1/4 of the input; stem1 (ReLU, conv 3x3 s2, BN) makes s1 from it at 1/8."""
    stem0 = nn.Sequential(nn.Conv2d(C_in, C // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C // 2),
                          nn.ReLU(inplace=False),
                          nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(C))
    stem1 = nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
                          nn.BatchNorm2d(C))
    return stem0, stem1


def _live_cells(genome: CellGenome, depth: int, reduce_at: frozenset[int], aux_at: int) -> set[int]:
    """Cells whose output reaches the classifier (or the auxiliary head, at cell aux_at)."""
    live = {depth - 1, aux_at} - {-1}
    for i in range(depth - 1, -1, -1):
        if i not in live:
            continue
        used = live_states(genome.reduce if i in reduce_at else genome.normal)
        live.update(i - 2 + s for s in (0, 1) if s in used)  # cell -1, -2: the stem
    return live
