"""Parameters and multiply-adds of a model: the cost objectives.   [torch]

The conventions of docs/reference-cells.md: parameters are the trainable ones without the
auxiliary head; MACs are per image, conv and linear multiply-accumulates only (one MAC counted
once; pooling, BN, activations and additions are free). MACs are measured, not derived: forward
hooks on every Conv2d and Linear during one eval-mode forward pass of one image, so whatever
the model actually runs is what is counted (`torch.utils.flop_counter` agrees: its FLOPs / 2).
"""

from __future__ import annotations

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
    """Build `genome` in `skeleton` on the CPU and count it."""
    model = build(genome, skeleton)
    return Counts(params=count_params(model), macs=count_macs(model, skeleton.input_shape))


def count_params(model: nn.Module) -> int:
    """Trainable parameters, without the auxiliary head (`model.auxiliary_head`, if any)."""
    head = getattr(model, "auxiliary_head", None)
    skip = {id(p) for p in head.parameters()} if head is not None else set()
    return sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in skip)


def count_macs(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Multiply-adds of one forward pass of one image of `input_shape` (C, H, W), in eval mode
    (so no auxiliary head runs). The model's training flags are restored afterwards."""
    macs = 0

    def on_conv(m: nn.Conv2d, inputs, out: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = m.kernel_size
        macs += out.numel() * (m.in_channels // m.groups) * kh * kw

    def on_linear(m: nn.Linear, inputs, out: torch.Tensor) -> None:
        nonlocal macs
        macs += out.numel() * m.in_features

    head = getattr(model, "auxiliary_head", None)
    skip = set(head.modules()) if head is not None else set()  # it does not run in eval mode anyway
    hooks = [m.register_forward_hook(on_conv if isinstance(m, nn.Conv2d) else on_linear)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m not in skip]
    modes = {m: m.training for m in model.modules()}
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    finally:
        for h in hooks:
            h.remove()
        for m, training in modes.items():
            m.training = training
    return macs



def largest(genomes, skeleton: Skeleton) -> tuple[int, int]:
    """The largest MACs and parameter counts among `genomes` in `skeleton` (at least 1 each)."""
    macs, params = 1, 1
    for genome in genomes:
        counts = count(genome, skeleton)
        macs, params = max(macs, counts.macs), max(params, counts.params)
    return macs, params
