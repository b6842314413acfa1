"""Counts against their oracles: the published figures of docs/reference-cells.md, and
torch.utils.flop_counter on a real forward pass for the shape-pass MAC counter."""

import random

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from evo_nas.build import Skeleton, build
from evo_nas.evaluate.count import Counts, count, count_macs, count_params, shape_pass
from evo_nas.genome_io import load_genome
from evo_nas.spaces.cells import CellSpace
from evo_nas.spaces.layers import LayerSpace
from evo_nas.spaces.nb201 import NB201Genome, NB201Space

CIFAR10 = Skeleton(input_shape=(3, 32, 32), classes=10, init_channels=36, depth=20, auxiliary=True)
PUBLISHED = ("darts_v2", "nasnet_a", "amoebanet_a", "darts_v1")


@pytest.fixture(scope="module")
def published():
    """The published cells in DARTS' CIFAR-10 evaluation network, built once (auxiliary head on,
    to show that the counts leave it out)."""
    return {name: build(load_genome(f"genomes/{name}.yaml"), CIFAR10) for name in PUBLISHED}


@pytest.fixture(scope="module")
def published_counts(published):
    counts = {name: Counts(count_params(m), count_macs(m, CIFAR10.input_shape)) for name, m in published.items()}
    for name, c in counts.items():
        print(f"{name}: {c.params:,} params, {c.macs:,} MACs")
    return counts


def flop_counter_macs(model: torch.nn.Module, input_shape) -> int:
    """The oracle: FLOPs / 2 of one eval-mode forward pass of one image. Both counters see the
    same ops: flop_counter counts convolutions and matmuls (addmm, without the bias add) and
    nothing else, exactly what the shape pass counts on Conv2d and Linear."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    flops = counter.get_total_flops()
    assert flops % 2 == 0
    return flops // 2


def test_darts_v2_has_the_published_3349342_parameters_and_about_528M_macs(published_counts):
    c = published_counts["darts_v2"]
    print(f"DARTS-V2: {c.params:,} params, {c.macs:,} MACs")
    assert c.params == 3_349_342  # DARTS training log: param size = 3.349342MB
    assert c.macs == pytest.approx(528e6, rel=0.01)


def test_nasnet_a_has_3_83M_parameters_and_a_little_below_608M_macs(published_counts):
    c = published_counts["nasnet_a"]
    print(f"NASNet-A: {c.params:,} params, {c.macs:,} MACs")
    assert round(c.params / 1e6, 2) == 3.83
    assert 0.97 * 608e6 < c.macs < 608e6  # the published 608M also counts some pooling


@pytest.mark.parametrize("name", ["amoebanet_a", "darts_v1"])
def test_other_published_cells_build_and_count(published_counts, name):
    # docs/reference-cells.md gives no figure for these in this skeleton: only that they count.
    c = published_counts[name]
    assert c.params > 0 and c.macs > 0


def test_nb201_all_conv3x3_cell_has_1531546_parameters():
    model = build(NB201Genome(edges=("nor_conv_3x3",) * 6), Skeleton(init_channels=16, depth=5, classes=10))
    assert count_params(model) == 1_531_546  # NASLib's NB201 data: 1.531546M


@pytest.mark.slow
@pytest.mark.parametrize("name", PUBLISHED)
def test_the_shape_pass_agrees_with_flop_counter_on_published_cells(published, published_counts, name):
    assert published_counts[name].macs == flop_counter_macs(published[name], CIFAR10.input_shape)


SPACES = {"cells": CellSpace(), "layers": LayerSpace(), "nb201": NB201Space()}


@pytest.mark.parametrize("space", sorted(SPACES))
@pytest.mark.parametrize("seed", range(4))
def test_the_shape_pass_agrees_with_flop_counter_on_random_genomes(space, seed):
    genome = SPACES[space].sample(random.Random(seed))
    shape = (1, 28, 28) if seed % 2 else (3, 16, 16)
    skeleton = Skeleton(input_shape=shape, init_channels=8, depth={"cells": 5, "layers": 8, "nb201": 1}[space],
                        classes=7)
    model = build(genome, skeleton)
    assert count_macs(model, shape) == flop_counter_macs(model, shape)


def test_auxiliary_head_and_frozen_parameters_are_not_counted():
    genome = load_genome("genomes/darts_v2.yaml")
    small = Skeleton(input_shape=(3, 16, 16), init_channels=8, depth=5)
    plain = build(genome, small)
    with_aux = build(genome, Skeleton(input_shape=(3, 16, 16), init_channels=8, depth=5, auxiliary=True))
    assert count_params(with_aux) == count_params(plain)
    assert count_macs(with_aux.train(), small.input_shape) == count_macs(plain, small.input_shape)
    plain.stem[0].weight.requires_grad_(False)
    assert count_params(with_aux) - count_params(plain) == 3 * 24 * 3 * 3


def test_count_macs_restores_each_module_training_flag():
    model = build(load_genome("genomes/darts_v2.yaml"), Skeleton(input_shape=(3, 8, 8), init_channels=8, depth=3))
    model.train()
    model.cells[1].eval()
    before = {name: m.training for name, m in model.named_modules()}
    count_macs(model, (3, 8, 8))
    assert {name: m.training for name, m in model.named_modules()} == before


def test_count_builds_and_counts():
    genome = load_genome("genomes/zoph_le_baseline.yaml")
    skeleton = Skeleton(input_shape=(1, 28, 28))
    model = build(genome, skeleton)
    assert count(genome, skeleton) == Counts(count_params(model), count_macs(model, skeleton.input_shape))


@pytest.mark.parametrize("space", sorted(SPACES))
@pytest.mark.parametrize("seed", range(3))
def test_counting_a_meta_built_network_equals_counting_the_real_one(space, seed):
    genome = SPACES[space].sample(random.Random(100 + seed))
    skeleton = Skeleton(input_shape=(3, 20, 12), init_channels=6, depth={"cells": 4, "layers": 6, "nb201": 1}[space],
                        classes=5)
    model = build(genome, skeleton)
    assert count(genome, skeleton) == Counts(count_params(model), flop_counter_macs(model, skeleton.input_shape))


def test_the_shape_pass_gives_the_real_output_shape_and_leaves_the_model_alone():
    model = build(load_genome("genomes/nasnet_a.yaml"), Skeleton(input_shape=(3, 16, 16), init_channels=8, depth=4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    forward = model.stem[0].forward
    macs, shape = shape_pass(model, (3, 16, 16))
    assert macs == count_macs(model, (3, 16, 16)) and shape == (10,)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert model.stem[0].forward == forward and "forward" not in vars(model.stem[0])  # the stand-ins are gone


@pytest.mark.parametrize("conv", [
    nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(3, 8, (3, 5), stride=(2, 1), padding=(0, 2), dilation=(1, 2)),
    nn.Conv2d(3, 6, 3, padding="same", dilation=2, groups=3), nn.Conv2d(3, 8, 4, padding="valid"),
    nn.Conv2d(3, 8, 3, padding=2, padding_mode="reflect", stride=3),
])
def test_the_shape_pass_knows_every_conv_geometry(conv):
    with torch.no_grad():
        real = conv(torch.zeros(1, 3, 17, 23)).shape
    assert shape_pass(nn.Sequential(conv), (3, 17, 23))[1] == tuple(real[1:])
    model = nn.Sequential(conv, nn.BatchNorm2d(conv.out_channels), nn.Flatten(), nn.Linear(real[1:].numel(), 4))
    assert count_macs(model, (3, 17, 23)) == flop_counter_macs(model, (3, 17, 23))


def test_the_shape_pass_refuses_what_the_real_model_refuses():
    broken = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(4, 8, 3))
    with pytest.raises(RuntimeError):
        broken(torch.zeros(1, 3, 16, 16))
    with pytest.raises(RuntimeError, match="expects 4 input channels or features, got 8"):
        count_macs(broken, (3, 16, 16))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_count_macs_of_a_model_on_cuda():
    genome = load_genome("genomes/darts_v2.yaml")
    model = build(genome, CIFAR10)
    cpu = count_macs(model, CIFAR10.input_shape)
    assert count_macs(model.cuda(), CIFAR10.input_shape) == cpu == 528_359_040
    assert next(model.parameters()).is_cuda
