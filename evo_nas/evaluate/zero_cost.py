"""A training-free score: NASWOT (Mellor et al. 2021, "Neural Architecture Search without Training"),
the log-determinant of the ReLU activation-pattern kernel of one batch at initialisation.   [torch]
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def naswot(model: nn.Module, images: torch.Tensor) -> float:
    """log|K| for K[i, j] = the number of ReLUs on which images i and j agree (both active or both
    not); higher means the untrained network tells the images apart better. `images` (N, C, H, W),
    N of a few dozen; the model stays in training mode (BatchNorm on batch statistics)."""
    codes: list[torch.Tensor] = []

    def keep(module, inputs, output):
        codes.append((output.flatten(1) > 0).float())

    hooks = [m.register_forward_hook(keep) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        model.train()
        model(images)
    finally:
        for hook in hooks:
            hook.remove()
    if not codes:
        return float("nan")
    c = torch.cat(codes, dim=1).double()
    kernel = c @ c.T + (1 - c) @ (1 - c).T
    return torch.linalg.slogdet(kernel)[1].item()
