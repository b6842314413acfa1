"""Training-free scores of a network at initialisation: NASWOT (Mellor et al. 2021, "Neural
Architecture Search without Training"), which needs a batch of images, and synflow (Tanaka et al.
2020, "Pruning neural networks without any data by iteratively conserving synaptic flow"; as a NAS
score, Abdelfattah et al. 2021, "Zero-Cost Proxies for Lightweight NAS"), which needs none.   [torch]
"""

from __future__ import annotations

import copy

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


def synflow(model: nn.Module, input_shape: tuple[int, ...]) -> float:
    """sum over the weights of every Conv2d and Linear of |theta * dR/dtheta|, where R is the sum of
    the outputs of the network with every parameter replaced by its absolute value, fed one image
    of ones of `input_shape` (C, H, W), in double precision (R overflows float32 in deep networks).
    As Abdelfattah et al.'s code: the weights of Conv2d and Linear layers only, summed. Their code
    builds the network without BatchNorm; here BatchNorm runs in eval mode, which at initialisation
    (mean 0, variance 1, weight 1, bias 0) is x / sqrt(1 + eps): the identity up to a factor of
    1 - 5e-6 per layer. `model` itself is not changed (a double-precision copy is scored)."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    for p in net.parameters():
        p.requires_grad_(True)
        p.grad = None
    net(torch.ones((1, *input_shape), dtype=torch.float64)).sum().backward()
    total = 0.0
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.Linear) and m.weight.grad is not None:
            total += (m.weight * m.weight.grad).abs().sum().item()
    return total


SCORE_SEED = 0  # the initialisation every score is taken at: a score is a function of the genome


def initialised(genome, skeleton) -> nn.Module:
    """The network of `genome` in `skeleton` with the weights torch draws from SCORE_SEED (the
    process's RNG is left as it was)."""
    from evo_nas.build import build

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SCORE_SEED)
        return build(genome, skeleton)


NASWOT_IMAGES = 64  # images in NASWOT's batch: the kernel is 64 x 64


def naswot_images(cfg) -> torch.Tensor:
    """The first NASWOT_IMAGES images of a run's training split (RunConfig `cfg`), as floats."""
    from evo_nas.evaluate.device_data import load_data

    train = load_data(cfg.data, cfg.seed, "cpu", "train", cfg.skeleton.classes)
    return train.images[:NASWOT_IMAGES].float().contiguous()


def measurer(cfg):
    """`measure(genome)` for a run's predictor (predictor.py): the genome's exact params and MACs
    in the run's skeleton, and its synflow and NASWOT scores at initialisation (SCORE_SEED), taken
    with the run's CPU thread count (float sums depend on it) in the process that drives the run."""
    from evo_nas.evaluate.count import count_macs, count_params
    from evo_nas.predictor import Measures

    images: list[torch.Tensor] = []  # loaded on the first call

    def measure(genome) -> Measures:
        if not images:
            images.append(naswot_images(cfg))
        threads = torch.get_num_threads()
        torch.set_num_threads(cfg.backend.cpu_threads)
        try:
            model = initialised(genome, cfg.skeleton)
            counts = (count_params(model), count_macs(model, cfg.skeleton.input_shape))
            scores = (("synflow", synflow(model, cfg.skeleton.input_shape)), ("naswot", naswot(model, images[0])))
        finally:
            torch.set_num_threads(threads)
        return Measures(*counts, scores)

    return measure
