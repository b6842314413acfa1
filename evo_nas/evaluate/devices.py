"""Which device a command runs on: "auto" resolved, CUDA checked, an explicit index.   [torch]"""

from __future__ import annotations

import torch

from evo_nas.errors import ConfigError


def available(requested: str) -> str:
    """"cpu" or "cuda" for a requested "auto", "cpu" or "cuda"; ConfigError if CUDA is asked
    for and torch sees no GPU."""
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for, but torch sees no CUDA GPU here")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def torch_device(device: str | torch.device) -> torch.device:
    """A torch.device with an explicit index on CUDA: one device a whole training long."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def gpu_count() -> int:
    return torch.cuda.device_count()
