"""Parameters and multiply-adds of a model: the cost objectives.   [torch]

The conventions of docs/reference-cells.md: parameters are the trainable ones without the
auxiliary head; MACs are per image, conv and linear multiply-accumulates only (one MAC counted
once; pooling, BN, activations and additions are free). MACs are traced, not derived by hand:
one eval-mode forward pass of one image through the model's own forward, so whatever the model
runs is what is counted (`torch.utils.flop_counter` on a real forward agrees: its FLOPs / 2).

That pass computes shapes, not convolutions: for its duration every Conv2d and Linear returns
zeros of its output's shape (its MACs follow from that shape and its own sizes) and every
BatchNorm (2d, or 1d over pooled features) passes its input on, so no weight is read and the
rest (pools, additions, concats) is cheap. A model built on the meta device (`count`) is
counted the same way, without ever having memory or initial weights. docs/reference-cells.md gives the timings.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from evo_nas.build import build
from evo_nas.config import Skeleton
from evo_nas.genome import Genome


@dataclass(frozen=True)
class Counts:
    params: int
    macs: int  # per image


def count(genome: Genome, skeleton: Skeleton = Skeleton()) -> Counts:
    """Build `genome` in `skeleton` on the meta device (no memory, no initialisation) and count it."""
    model = build_meta(genome, skeleton)
    return Counts(params=count_params(model), macs=count_macs(model, skeleton.input_shape))


def build_meta(genome: Genome, skeleton: Skeleton) -> nn.Module:
    """The network `genome` describes, with shapes but no storage: for counting and describing."""
    with torch.device("meta"):
        return build(genome, skeleton)


def count_params(model: nn.Module) -> int:
    """Trainable parameters, without the auxiliary head (`model.auxiliary_head`, if any)."""
    head = getattr(model, "auxiliary_head", None)
    skip = {id(p) for p in head.parameters()} if head is not None else set()
    return sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in skip)


def count_macs(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Multiply-adds of one forward pass of one image of `input_shape` (C, H, W), in eval mode
    (so no auxiliary head runs)."""
    return shape_pass(model, input_shape)[0]


def shape_pass(model: nn.Module, input_shape: tuple[int, int, int]) -> tuple[int, tuple[int, ...]]:
    """(MACs, output shape) of one eval-mode forward pass of one image of `input_shape` (C, H, W),
    computing shapes only (see the module doc). The model is left as it was: weights untouched,
    every module's training flag restored."""
    param = next((p for p in model.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None and param.device.type != "meta" else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    head = getattr(model, "auxiliary_head", None)
    tally = {"macs": 0, "skip": set(head.modules()) if head is not None else set()}
    modes = {m: m.training for m in model.modules()}
    try:
        with _shapes_only(model, tally), torch.no_grad():
            model.eval()
            out = model(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    finally:
        for m, training in modes.items():
            m.training = training
    return tally["macs"], tuple(out.shape[1:])


@contextlib.contextmanager
def _shapes_only(model: nn.Module, tally: dict):
    """Conv2d, Linear and BatchNorm (which hold every parameter of evonas's networks) replaced,
    on the instances, by what their output's shape needs; the MACs added to tally["macs"]."""
    patched = []
    for m in model.modules():
        stand_in = _stand_in(m, tally)
        if stand_in is not None:
            patched.append((m, m.__dict__.get("forward")))
            m.forward = stand_in
    try:
        yield
    finally:
        for m, own in patched:
            del m.forward
            if own is not None:
                m.forward = own


def _stand_in(m: nn.Module, tally: dict):
    counted = m not in tally["skip"]  # the auxiliary head does not run in eval mode anyway

    def conv(x: torch.Tensor) -> torch.Tensor:
        _expect(m, x.shape[1], m.in_channels)
        out = x.new_zeros((x.shape[0], m.out_channels, *_conv_size(m, x.shape[-2:])))
        kh, kw = m.kernel_size
        tally["macs"] += counted * out.numel() * (m.in_channels // m.groups) * kh * kw
        return out

    def linear(x: torch.Tensor) -> torch.Tensor:
        _expect(m, x.shape[-1], m.in_features)
        out = x.new_zeros((*x.shape[:-1], m.out_features))
        tally["macs"] += counted * out.numel() * m.in_features
        return out

    def batch_norm(x: torch.Tensor) -> torch.Tensor:
        _expect(m, x.shape[1], m.num_features)
        return x

    kinds = ((nn.Conv2d, conv), (nn.Linear, linear), (nn.modules.batchnorm._BatchNorm, batch_norm))
    return next((f for kind, f in kinds if isinstance(m, kind)), None)


def _conv_size(m: nn.Conv2d, size) -> list[int]:
    """Conv2d's output H, W (torch's formula; padding modes other than zeros pad the same amount)."""
    if m.padding == "same":
        return list(size)
    padding = (0, 0) if m.padding == "valid" else m.padding
    return [(n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip(size, padding, m.dilation, m.kernel_size, m.stride)]


def _expect(m: nn.Module, got: int, want: int) -> None:
    if got != want:  # what the real module would have refused
        raise RuntimeError(f"{type(m).__name__} expects {want} input channels or features, got {got}")


def largest(genomes, skeleton: Skeleton) -> tuple[int, int]:
    """The largest MACs and parameter counts among `genomes` in `skeleton` (at least 1 each)."""
    macs, params = 1, 1
    for genome in genomes:
        counts = count(genome, skeleton)
        macs, params = max(macs, counts.macs), max(params, counts.params)
    return macs, params
