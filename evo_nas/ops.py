"""Operations by name: name -> nn.Module constructor, as in DARTS' `operations.py` (docs/design.md).   [torch]
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

OpFactory = Callable[[int, int, bool], nn.Module]


class ReLUConvBN(nn.Sequential):
    """ReLU -> Conv (no bias) -> BN. `kernel_size`, `stride`, `padding` as for nn.Conv2d."""

    def __init__(self, C_in: int, C_out: int, kernel_size, stride=1, padding=0, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> depthwise kxk (dilated, strided) -> pointwise 1x1 -> BN."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, dilation: int,
                 affine: bool = True):
        padding = dilation * (kernel_size - 1) // 2  # 'same' at stride 1, ceil(H/2) at stride 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C_in, C_in, kernel_size, stride=stride, padding=padding, dilation=dilation,
                      groups=C_in, bias=False),
            nn.Conv2d(C_in, C_out, 1, bias=False),
            nn.BatchNorm2d(C_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """The separable conv applied twice; only the first one is strided (DARTS' SepConv)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, affine: bool = True):
        super().__init__(
            DilConv(C_in, C_in, kernel_size, stride, 1, affine),
            DilConv(C_in, C_out, kernel_size, 1, 1, affine),
        )


class Conv7x1x7(nn.Sequential):
    """ReLU -> Conv 1x7 stride (1, s) -> Conv 7x1 stride (s, 1) -> BN."""

    def __init__(self, C: int, stride: int, affine: bool = True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
            nn.Conv2d(C, C, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
            nn.BatchNorm2d(C, affine=affine),
        )


class FactorizedReduce(nn.Module):
    """Halve H and W: ReLU, then two 1x1 stride-2 convs (C_out/2 each), the second on the input
    shifted by one pixel, concatenated in depth, then BN. Output (N, C_out, ceil(H/2), ceil(W/2))."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True):
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even C_out, got {C_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(C_in, C_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]  # x moved up-left by one pixel, zero-filled
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class Zero(nn.Module):
    """The `none` op: zeros of the output shape (strided like the other ops)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x[:, :, ::self.stride, ::self.stride])


class DropPath(nn.Module):
    """DARTS' drop path: in training, zero a sample's branch output with probability p and
    scale the kept ones by 1/(1-p); the identity in eval mode.

    p lives in a buffer (not saved in state_dict) and is changed in place with `set_p`, so a
    trainer can anneal it without host syncs and under a captured CUDA graph. 0 <= p < 1.
    """

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.register_buffer("p", torch.tensor(_check_p(p)), persistent=False)

    def set_p(self, p: float) -> None:
        self.p.fill_(_check_p(p))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)  # one draw per sample
        mask = torch.rand(shape, device=x.device, dtype=x.dtype) < keep
        return x * mask / keep

    def extra_repr(self) -> str:
        return "p in buffer"


def _check_p(p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"drop path probability must be in [0, 1), got {p}")
    return float(p)


def _skip(C: int, stride: int, affine: bool) -> nn.Module:
    return nn.Identity() if stride == 1 else FactorizedReduce(C, C, affine)


OPS: dict[str, OpFactory] = {
    "none": lambda C, stride, affine: Zero(stride),
    "skip_connect": _skip,
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, affine),
    "sep_conv_7x7": lambda C, stride, affine: SepConv(C, C, 7, stride, affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 2, affine),
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1,
                                                           count_include_pad=False),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "conv_7x1_1x7": lambda C, stride, affine: Conv7x1x7(C, stride, affine),
}

NB201_OPS_TABLE: dict[str, OpFactory] = {
    "none": lambda C, stride, affine: Zero(stride),
    "skip_connect": _skip,
    "nor_conv_1x1": lambda C, stride, affine: ReLUConvBN(C, C, 1, stride, 0, affine),
    "nor_conv_3x3": lambda C, stride, affine: ReLUConvBN(C, C, 3, stride, 1, affine),
    # With C_in == C_out NB201's POOLING has no preprocessing conv: a plain pool.
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1,
                                                           count_include_pad=False),
}
