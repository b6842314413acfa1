"""Genome + skeleton -> nn.Module: one function, `build`, as DARTS' `model.py`.   [torch]

The skeleton is the fixed network around what a genome describes; its defaults are DARTS'
CIFAR-10 search-phase settings, small enough to train many candidates.

Cell genomes: DARTS' NetworkCIFAR, exactly as in reference/known-cells.md. Choices of ours:
- Blocks that cannot reach a cell's output are not built (`live_states`), nor is a cell input
  projection that no live block reads, nor a whole cell whose output no later live cell (or,
  with `auxiliary`, the auxiliary head) reads. Such parts could not change the output, so they
  add no parameters and no MACs; genomes with equal canonical keys build the same network up to
  the order of its ops.
- Auxiliary head after cell `2*layers//3`: DARTS' AuxiliaryHeadCIFAR. Its pool is DARTS'
  AvgPool(5, stride 3) where that gives a 2x2 map (maps of 8..10 pixels, as CIFAR's 8x8);
  otherwise an adaptive average pool to 2x2 (e.g. the 7x7 map of a 28x28 input), so the 2x2
  conv always yields 768 features.
- Drop path (`skeleton.drop_path > 0`) drops each non-identity branch op in training, as
  DARTS; `model.drop_path_prob` anneals it. The other spaces do not use drop path (nor the
  auxiliary head): `build` raises ConfigError rather than ignore it silently.

Layer genomes (Zoph & Le 2017): no stem; state 0 is the image. Layer i convolves the depth
concat of its inputs (height x width, `filters`, padding (k-1)//2 per axis, no bias, stride 2
when i is in `reduction_layers(depth, skeleton.reductions)`), then BN, ReLU. Inputs smaller
than the largest among them are zero-padded at the bottom/right, as the paper pads. The head
global-average-pools every layer output that no layer reads, separately, and concatenates
them -> dropout -> Linear. `init_channels`, `layers`, `stem_multiplier` do not apply.

NB201 genomes: NAS-Bench-201's TinyNetwork with C = `init_channels`, N = `layers` cells per
stage. Every edge that is not `none` is built, also one that cannot reach node 3, so counts
match the benchmark's. One choice of ours: the basic block's shortcut pools with ceil_mode,
which is the same at even sizes and keeps both paths the same size on odd maps (7x7 from 28x28).

All models: stride-2 steps map H to ceil(H/2), so any input of at least 8x8 works; a genome's
`hparams.dropout` overrides `skeleton.dropout`; forward has no host syncs or data-dependent
branches (CUDA-graph capturable).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from evo_nas.errors import ConfigError
from evo_nas.genome import NB201_EDGES, Cell, CellGenome, Genome, LayerGenome, NB201Genome
from evo_nas.ops import NB201_OPS_TABLE, OPS, DropPath, FactorizedReduce, ReLUConvBN
from evo_nas.spaces.cells import live_states
from evo_nas.spaces.layers import reduction_layers


@dataclass(frozen=True)
class Skeleton:
    """The network around the genome. Defaults: DARTS' CIFAR-10 search network."""

    input_shape: tuple[int, int, int] = (3, 32, 32)  # (C, H, W) of one image
    classes: int = 10
    init_channels: int = 16  # C: cells of the first stage have C channels per state
    layers: int = 8  # cells (cell space); cells per stage N (nb201); unused by layer genomes
    stem_multiplier: int = 3  # the cell stem makes stem_multiplier * C channels, as DARTS
    reductions: int = 2  # stride-2 steps (cell and layer spaces; nb201 always has 2)
    auxiliary: bool = False  # DARTS auxiliary head (training mode only); cell space only
    drop_path: float = 0.0  # initial drop-path probability (cell space only; 0.2 in DARTS eval)
    dropout: float = 0.0  # classifier dropout; a genome's hparams.dropout overrides it

    def __post_init__(self):
        shape = tuple(self.input_shape)
        object.__setattr__(self, "input_shape", shape)
        if len(shape) != 3 or shape[0] < 1 or min(shape[1:]) < 8:
            raise ConfigError(f"skeleton.input_shape: needs (C, H, W) with H, W >= 8, got {shape}")
        for name in ("classes", "init_channels", "layers", "stem_multiplier"):
            if getattr(self, name) < 1:
                raise ConfigError(f"skeleton.{name}: must be at least 1, got {getattr(self, name)}")
        if self.reductions < 0:
            raise ConfigError(f"skeleton.reductions: must be >= 0, got {self.reductions}")
        for name in ("drop_path", "dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"skeleton.{name}: must be in [0, 1), got {getattr(self, name)}")


def build(genome: Genome, skeleton: Skeleton = Skeleton()) -> nn.Module:
    """The network `genome` describes, inside `skeleton`, on the CPU, in training mode."""
    dropout = genome.hparams.dropout if genome.hparams is not None else skeleton.dropout
    if isinstance(genome, CellGenome):
        return CellNetwork(genome, skeleton, dropout)
    if skeleton.auxiliary or skeleton.drop_path > 0:
        raise ConfigError(f"skeleton: auxiliary and drop_path apply to cell genomes only, "
                          f"not to the {genome.space!r} space")
    if isinstance(genome, LayerGenome):
        return LayerNetwork(genome, skeleton, dropout)
    if isinstance(genome, NB201Genome):
        return NB201Network(genome, skeleton, dropout)
    raise TypeError(f"build: not a genome: {type(genome).__name__}")


class Network(nn.Module):
    """What every built model offers a trainer: an optional auxiliary head (None unless built;
    `count_params` leaves it out) and the drop-path probability."""

    def __init__(self):
        super().__init__()
        self.auxiliary_head: nn.Module | None = None
        self._drop_path_prob = 0.0

    @property
    def drop_path_prob(self) -> float:
        return self._drop_path_prob

    @drop_path_prob.setter
    def drop_path_prob(self, p: float) -> None:
        drops = [m for m in self.modules() if isinstance(m, DropPath)]
        if p > 0 and not drops:
            raise ValueError("drop_path_prob: this model was built without drop path "
                             "(build it with Skeleton(drop_path > 0), cell genomes only)")
        for m in drops:
            m.set_p(p)
        self._drop_path_prob = float(p)


def _halve(size: tuple[int, int]) -> tuple[int, int]:
    return (-(-size[0] // 2), -(-size[1] // 2))


def _head(channels: int, classes: int, dropout: float) -> nn.Sequential:
    """(N, channels) features -> (N, classes) logits."""
    return nn.Sequential(nn.Dropout(dropout) if dropout > 0 else nn.Identity(), nn.Linear(channels, classes))


# -- cell space: DARTS NetworkCIFAR ---------------------------------------------------------

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
    """DARTS' AuxiliaryHeadCIFAR on a (N, C, H, W) map -> (N, classes); see the module doc."""

    def __init__(self, C: int, size: tuple[int, int], classes: int):
        darts_pool = all(8 <= s <= 10 for s in size)  # AvgPool(5, 3) -> 2x2 exactly there
        pool = (nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False) if darts_pool
                else nn.AdaptiveAvgPool2d(2))
        super().__init__(
            nn.ReLU(inplace=False), pool,
            nn.Conv2d(C, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=False),
            nn.Flatten(), nn.Linear(768, classes),
        )


class CellNetwork(Network):
    def __init__(self, genome: CellGenome, sk: Skeleton, dropout: float):
        super().__init__()
        C = sk.init_channels
        C_stem = sk.stem_multiplier * C
        self.stem = nn.Sequential(nn.Conv2d(sk.input_shape[0], C_stem, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(C_stem))
        reduce_at = reduction_layers(sk.layers, sk.reductions)
        self.aux_at = 2 * sk.layers // 3 if sk.auxiliary else -1
        live = _live_cells(genome, sk.layers, reduce_at, self.aux_at)
        size = sk.input_shape[1:]
        C_pp, C_p, reduction_prev = C_stem, C_stem, False
        cells = []
        for i in range(sk.layers):
            reduction = i in reduce_at
            if reduction:
                C, size = 2 * C, _halve(size)
            cell = genome.reduce if reduction else genome.normal
            cells.append(CellModule(cell, C_pp, C_p, C, reduction, reduction_prev, sk.drop_path)
                         if i in live else DeadCell())
            C_pp, C_p, reduction_prev = C_p, len(cell.output_states()) * C, reduction
            if i == self.aux_at:
                self.auxiliary_head = AuxiliaryHead(C_p, size, sk.classes)
        self.cells = nn.ModuleList(cells)
        self.classifier = _head(C_p, sk.classes, dropout)
        self._drop_path_prob = sk.drop_path

    def forward(self, x: torch.Tensor):
        s0 = s1 = self.stem(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1)
            if i == self.aux_at and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(s1.mean(dim=(2, 3)))
        return logits if aux is None else (logits, aux)


def _live_cells(genome: CellGenome, layers: int, reduce_at: frozenset[int], aux_at: int) -> set[int]:
    """Cells whose output reaches the classifier (or the auxiliary head, at cell aux_at)."""
    live = {layers - 1, aux_at} - {-1}
    for i in range(layers - 1, -1, -1):
        if i not in live:
            continue
        used = live_states(genome.reduce if i in reduce_at else genome.normal)
        live.update(i - 2 + s for s in (0, 1) if s in used)  # cell -1, -2: the stem
    return live


# -- layer space: Zoph & Le 2017 ------------------------------------------------------------

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
        self.classifier = _head(sum(channels[s] for s in self.outputs), sk.classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [x]
        for layer in self.layers:
            states.append(layer(states))
        features = torch.cat([states[s].mean(dim=(2, 3)) for s in self.outputs], dim=1)
        return self.classifier(features)


def _conv_size(size: tuple[int, int], kernel: tuple[int, int], stride: int) -> tuple[int, int]:
    return tuple((n + 2 * ((k - 1) // 2) - k) // stride + 1 for n, k in zip(size, kernel))


# -- NAS-Bench-201: TinyNetwork ---------------------------------------------------------------

class NB201Cell(nn.Module):
    """node_j = sum_i op_ij(node_i) over the edges that are not `none`; returns node 3."""

    def __init__(self, edges: tuple[str, ...], C: int):
        super().__init__()
        self.ops = nn.ModuleList()
        incoming: dict[int, list[tuple[int, int]]] = {1: [], 2: [], 3: []}  # node -> (op index, source)
        for op, (src, dst) in zip(edges, NB201_EDGES):
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
        C, N = sk.init_channels, sk.layers
        self.stem = nn.Sequential(nn.Conv2d(sk.input_shape[0], C, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(C))
        cells: list[nn.Module] = []
        for stage, width in enumerate((C, 2 * C, 4 * C)):
            if stage:
                cells.append(ResNetBasicBlock(width // 2, width))
            cells.extend(NB201Cell(genome.edges, width) for _ in range(N))
        self.cells = nn.Sequential(*cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * C), nn.ReLU(inplace=False))
        self.classifier = _head(4 * C, sk.classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(x.mean(dim=(2, 3)))
