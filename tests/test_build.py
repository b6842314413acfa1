"""build(): every space's genomes become trainable networks of the documented shape."""

import random

import pytest
import torch
from torch import nn

from evo_nas.build import Skeleton, build
from evo_nas.errors import ConfigError
from evo_nas.evaluate.count import count_macs, count_params
from evo_nas.genome import HParams
from evo_nas.genome_io import load_genome
from evo_nas.nets.cells import AuxiliaryHead, CellModule, DeadCell
from evo_nas.ops import DropPath
from evo_nas.spaces.cells import Block, Branch, Cell, CellGenome, CellSpace
from evo_nas.spaces.layers import Layer, LayerGenome, LayerSpace
from evo_nas.spaces.nb201 import NB201Genome, NB201Space

SHAPES = [(1, 28, 28), (3, 32, 32)]
SMALL_LAYERS = LayerSpace(filter_counts=(4, 6, 8), max_layers=8)  # the space's rules, a CPU-sized width


def small(space: str, shape, **kw) -> Skeleton:
    layers = {"cells": 4, "layers": 8, "nb201": 1}[space]
    return Skeleton(input_shape=shape, classes=7, init_channels=8, depth=layers, **kw)


def sample(space: str, seed: int):
    rng = random.Random(seed)
    return {"cells": CellSpace(), "layers": SMALL_LAYERS, "nb201": NB201Space()}[space].sample(rng)


def block(a, i, b, j) -> Block:
    return Block(Branch(a, i), Branch(b, j))


def cells(normal: Cell, reduce: Cell | None = None) -> CellGenome:
    return CellGenome(normal=normal, reduce=reduce or normal)


@pytest.mark.parametrize("shape", SHAPES, ids=["1x28x28", "3x32x32"])
@pytest.mark.parametrize("space", ["cells", "layers", "nb201"])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.slow
def test_random_genomes_train_forward_and_backward(space, shape, seed):
    torch.manual_seed(seed)
    model = build(sample(space, seed), small(space, shape)).train()
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, 7)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.eval()(torch.randn(1, *shape)).shape == (1, 7)


@pytest.mark.parametrize("space", ["cells", "layers", "nb201"])
@pytest.mark.slow
def test_forward_reads_no_tensor_value_on_the_host(space, monkeypatch):
    """No .item(), bool(tensor), ... in forward/backward: what a CUDA graph capture needs."""
    kw = {"auxiliary": True, "drop_path": 0.2} if space == "cells" else {}
    model = build(sample(space, 3), small(space, (3, 16, 16), **kw)).train()
    x = torch.randn(2, 3, 16, 16)

    def host_sync(*args, **kwargs):
        raise AssertionError("host sync in forward")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, host_sync)
    out = model(x)
    logits = out[0] + out[1] if isinstance(out, tuple) else out
    logits.sum().backward()


def test_skeleton_defaults_and_validation():
    sk = Skeleton()
    assert (sk.input_shape, sk.classes, sk.init_channels, sk.depth) == ((3, 32, 32), 10, 16, 8)
    assert (sk.stem_multiplier, sk.reductions, sk.auxiliary, sk.drop_path, sk.dropout) == (3, 2, False, 0.0, 0.0)
    assert Skeleton(input_shape=[1, 28, 28]).input_shape == (1, 28, 28)
    for bad in ({"input_shape": (3, 7, 32)}, {"input_shape": (32, 32)}, {"classes": 0},
                {"drop_path": 1.0}, {"dropout": -0.1}, {"reductions": -1}):
        with pytest.raises(ConfigError):
            Skeleton(**bad)


class TestCellNetwork:
    def test_darts_skeleton_structure(self):
        model = build(load_genome("genomes/darts_v2.yaml"), Skeleton(init_channels=8, depth=6))
        stem_conv, stem_bn = model.stem
        assert (stem_conv.in_channels, stem_conv.out_channels, stem_conv.bias) == (3, 24, None)
        assert isinstance(stem_bn, nn.BatchNorm2d) and len(model.stem) == 2  # no ReLU
        # Reductions at 6//3 = 2 and 2*6//3 = 4; the cell after each projects state 0 with FR.
        pre0 = [type(c.preprocess0).__name__ for c in model.cells]
        assert pre0 == ["ReLUConvBN", "ReLUConvBN", "ReLUConvBN", "FactorizedReduce", "ReLUConvBN",
                        "FactorizedReduce"]
        assert [c.preprocess1[1].out_channels for c in model.cells] == [8, 8, 16, 16, 32, 32]
        assert model.classifier[-1].in_features == 4 * 32
        x = torch.randn(1, 3, 32, 32)
        sizes = []
        s0 = s1 = model.stem(x)
        for cell in model.cells:
            s0, s1 = s1, cell(s0, s1)
            sizes.append(tuple(s1.shape[1:]))
        assert sizes == [(32, 32, 32), (32, 32, 32), (64, 16, 16), (64, 16, 16), (128, 8, 8), (128, 8, 8)]

    @pytest.mark.parametrize("shape, pool", [((3, 32, 32), nn.AvgPool2d), ((1, 28, 28), nn.AdaptiveAvgPool2d)])
    @pytest.mark.slow
    def test_auxiliary_head_in_training_only(self, shape, pool):
        model = build(sample("cells", 0), Skeleton(input_shape=shape, classes=7, init_channels=8, depth=6,
                                                   auxiliary=True))
        assert isinstance(model.auxiliary_head, AuxiliaryHead)
        assert isinstance(model.auxiliary_head[1], pool)  # DARTS' AvgPool(5, 3) on CIFAR's 8x8 map
        logits, aux = model.train()(torch.randn(2, *shape))
        assert logits.shape == aux.shape == (2, 7)
        assert model.eval()(torch.randn(2, *shape)).shape == (2, 7)
        assert build(sample("cells", 0), small("cells", shape)).auxiliary_head is None

    def test_drop_path_changes_training_outputs_only(self):
        genome = load_genome("genomes/darts_v2.yaml")
        with_drop = build(genome, Skeleton(init_channels=8, depth=3, drop_path=0.3))
        plain = build(genome, Skeleton(init_channels=8, depth=3))
        plain.load_state_dict(with_drop.state_dict())
        x = torch.randn(4, 3, 16, 16)
        assert torch.equal(with_drop.eval()(x), plain.eval()(x))
        torch.manual_seed(0)
        assert not torch.allclose(with_drop.train()(x), plain.train()(x))
        with_drop.drop_path_prob = 0.0  # annealed to zero: the same as no drop path
        assert with_drop.drop_path_prob == 0.0
        assert torch.allclose(with_drop.train()(x), plain.train()(x))

    def test_drop_path_skips_identities_and_is_annealed_in_place(self):
        genome = load_genome("genomes/darts_v2.yaml")
        model = build(genome, Skeleton(init_channels=8, depth=3, drop_path=0.2))
        normal = model.cells[0]
        assert [d for d, op in zip(normal.dropped, normal.ops) if isinstance(op, nn.Identity)] == [False, False]
        model.drop_path_prob = 0.1
        assert all(abs(m.p.item() - 0.1) < 1e-7 for m in model.modules() if isinstance(m, DropPath))
        with pytest.raises(ValueError):
            build(genome, Skeleton(init_channels=8, depth=3)).drop_path_prob = 0.1

    def test_dropout_from_skeleton_or_genome_hparams(self):
        genome = load_genome("genomes/darts_v2.yaml")
        assert isinstance(build(genome, Skeleton(init_channels=8, depth=3)).classifier[0], nn.Identity)
        assert build(genome, Skeleton(init_channels=8, depth=3, dropout=0.3)).classifier[0].p == 0.3
        tuned = CellGenome(normal=genome.normal, reduce=genome.reduce,
                           hparams=HParams(lr=0.1, weight_decay=3e-4, dropout=0.1, optimizer="sgd"))
        assert build(tuned, Skeleton(init_channels=8, depth=3, dropout=0.3)).classifier[0].p == 0.1


class TestDeadParts:
    """Parts that cannot reach the output are not built: equal canonical keys, equal counts."""

    BASE = Cell(blocks=(block("sep_conv_3x3", 0, "skip_connect", 1), block("dil_conv_3x3", 2, "max_pool_3x3", 1),
                        block("sep_conv_5x5", 1, "avg_pool_3x3", 3)))
    A, B = block("sep_conv_3x3", 0, "skip_connect", 1), block("max_pool_3x3", 1, "conv_7x1_1x7", 0)
    PAIRS = {
        "swapped branches": (BASE, Cell(blocks=(block("skip_connect", 1, "sep_conv_3x3", 0),
                                                block("max_pool_3x3", 1, "dil_conv_3x3", 2),
                                                block("avg_pool_3x3", 3, "sep_conv_5x5", 1)))),
        "dead block": (BASE, Cell(blocks=BASE.blocks + (block("sep_conv_7x7", 0, "conv_7x1_1x7", 4),), concat=(4,))),
        "dead block first": (BASE, Cell(blocks=(block("sep_conv_7x7", 1, "conv_7x1_1x7", 0),
                                                *BASE.blocks[:1],
                                                block("dil_conv_3x3", 3, "max_pool_3x3", 1),
                                                block("sep_conv_5x5", 1, "avg_pool_3x3", 4)), concat=(5,))),
        "renumbered blocks": (Cell(blocks=(A, B, block("sep_conv_5x5", 2, "dil_conv_5x5", 3))),
                              Cell(blocks=(B, A, block("sep_conv_5x5", 3, "dil_conv_5x5", 2)))),
    }

    @pytest.mark.parametrize("name", sorted(PAIRS))
    def test_equal_keys_build_equal_counts(self, name):
        sk = Skeleton(input_shape=(3, 16, 16), init_channels=8, depth=4)
        a, b = (cells(c) for c in self.PAIRS[name])
        assert CellSpace().key(a) == CellSpace().key(b)
        ma, mb = build(a, sk), build(b, sk)
        assert count_params(ma) == count_params(mb)
        assert count_macs(ma, sk.input_shape) == count_macs(mb, sk.input_shape)

    def test_unread_input_is_not_projected(self):
        genome = cells(Cell(blocks=(block("sep_conv_3x3", 1, "skip_connect", 1),)))
        model = build(genome, Skeleton(init_channels=8, depth=3, reductions=0))
        assert all(c.preprocess0 is None and c.preprocess1 is not None for c in model.cells)

    def test_cells_nobody_reads_are_not_built(self):
        # Each cell reads only cell k-2: with 5 cells, 4 <- 2 <- 0 <- stem; cells 1 and 3 are dead.
        genome = cells(Cell(blocks=(block("sep_conv_3x3", 0, "skip_connect", 0),)))
        model = build(genome, Skeleton(init_channels=8, depth=5, reductions=0))
        assert [type(c) for c in model.cells] == [CellModule, DeadCell, CellModule, DeadCell, CellModule]
        assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)
        with_aux = build(genome, Skeleton(init_channels=8, depth=5, reductions=0, auxiliary=True))
        assert isinstance(with_aux.cells[3], CellModule)  # 2*5//3 = 3 feeds the auxiliary head
        assert isinstance(with_aux.cells[1], CellModule)


class TestLayerNetwork:
    # reduction_layers(3, 1) = {1}: layer 1 halves the map; layer 2 reads it and the image.
    GENOME = LayerGenome(layers=(Layer(3, 3, 4, (0,)), Layer(3, 3, 4, (1,)), Layer(1, 3, 5, (0, 2))))
    SKELETON = Skeleton(input_shape=(3, 32, 32), classes=10, reductions=1)

    def test_hand_counted_parameters_and_macs(self):
        model = build(self.GENOME, self.SKELETON)
        params = (3 * 4 * 3 * 3 + 2 * 4) + (4 * 4 * 3 * 3 + 2 * 4) + ((3 + 4) * 5 * 1 * 3 + 2 * 5) + (5 * 10 + 10)
        assert count_params(model) == params == 443  # the head's BatchNorm has no affine parameters
        # layer 2 works at 16x16, the size of its smaller input
        macs = 32 * 32 * 4 * (3 * 9) + 16 * 16 * 4 * (4 * 9) + 16 * 16 * 5 * (7 * 3) + 5 * 10
        assert count_macs(model, self.SKELETON.input_shape) == macs

    def test_larger_inputs_are_average_pooled_to_the_smallest(self):
        model = build(self.GENOME, self.SKELETON).eval()
        seen = {}
        model.layers[1].register_forward_hook(lambda m, inp, out: seen.update(layer1=out))
        model.layers[2].conv.register_forward_hook(lambda m, inp, out: seen.update(x=inp[0], out=out))
        image = torch.randn(2, 3, 32, 32)
        model(image)
        x = seen["x"]  # (2, 3 + 4, 16, 16): the image pooled 2x2, then layer 1's 16x16 output
        assert x.shape == (2, 7, 16, 16) and seen["out"].shape == (2, 5, 16, 16)
        torch.testing.assert_close(x[:, :3], nn.functional.avg_pool2d(image, 2))
        torch.testing.assert_close(x[:, 3:], seen["layer1"])

    def test_odd_sizes_pool_to_the_ceil_halved_size(self):
        # 9x13 -> layer 1 (stride 2) -> 5x7; layer 2 reads the image and layer 1: works at 5x7.
        model = build(self.GENOME, Skeleton(input_shape=(3, 9, 13), classes=3, reductions=1))
        assert model(torch.randn(2, 3, 9, 13)).shape == (2, 3)
        assert model.layers[2].pools == ((5, 7), None)

    def test_the_classifier_sees_standardised_features(self):
        torch.manual_seed(0)
        model = build(self.GENOME, self.SKELETON).train()
        seen = {}
        model.norm.register_forward_hook(lambda m, inp, out: seen.update(pooled=inp[0]))
        model.classifier.register_forward_hook(lambda m, inp, out: seen.update(f=inp[0]))
        model(torch.randn(16, 3, 32, 32))
        pooled, f = seen["pooled"], seen["f"]  # (16, 5): layer 2's pooled ReLU outputs, then standardised
        # at initialisation: an offset of ~0.39 (the mean of a ReLU'd unit normal), an sd of ~0.05 between images
        assert (pooled > 0).all() and pooled.std(0).max() < 0.25 * pooled.mean(0).min()
        torch.testing.assert_close(f.mean(0), torch.zeros(5), atol=1e-5, rtol=0)
        torch.testing.assert_close(f.var(0, unbiased=False), torch.ones(5), atol=0.05, rtol=0)  # BatchNorm's eps

    def test_every_unread_layer_feeds_the_classifier(self):
        genome = LayerGenome(layers=(Layer(3, 3, 4, (0,)), Layer(3, 3, 6, (1,)), Layer(3, 3, 5, (1,))))
        model = build(genome, Skeleton(input_shape=(1, 8, 8)))
        assert model.outputs == (2, 3)
        assert model.classifier[-1].in_features == 6 + 5

    def test_baseline_genome_and_options_that_do_not_apply(self):
        genome = load_genome("genomes/zoph_le_baseline.yaml")
        assert build(genome, Skeleton(input_shape=(1, 28, 28)))(torch.randn(2, 1, 28, 28)).shape == (2, 10)
        with pytest.raises(ConfigError):
            build(genome, Skeleton(drop_path=0.2))
        with pytest.raises(ConfigError):
            build(genome, Skeleton(auxiliary=True))


class TestNB201Network:
    def test_tiny_network_structure(self):
        model = build(NB201Genome(edges=("nor_conv_3x3",) * 6), Skeleton(init_channels=16, depth=2))
        kinds = [type(m).__name__ for m in model.cells]
        assert kinds == ["NB201Cell"] * 2 + ["ResNetBasicBlock"] + ["NB201Cell"] * 2 + ["ResNetBasicBlock"] + \
            ["NB201Cell"] * 2
        assert model.classifier[-1].in_features == 64
        assert isinstance(model.lastact[0], nn.BatchNorm2d)

    def test_cell_sums_edges_and_all_none_nodes_are_zero(self):
        # Node 1 has only a `none` edge: zeros; node 3 = skip(node 0) + skip(node 2) = x + x.
        genome = NB201Genome(edges=("none", "skip_connect", "skip_connect", "none", "none", "skip_connect"))
        cell = build(genome, Skeleton(depth=1)).cells[0]
        x = torch.randn(2, 16, 8, 8)
        assert torch.equal(cell(x), x)  # node 2 = x + zeros(node 1); node 3 = node 2
        all_none = build(NB201Genome(edges=("none",) * 6), Skeleton(depth=1)).cells[0]
        assert torch.equal(all_none(x), torch.zeros_like(x))

    def test_odd_maps(self):
        model = build(load_genome("genomes/nb201_resnet.yaml"), Skeleton(input_shape=(1, 28, 28), depth=1))
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)  # 28 -> 14 -> 7 -> 4
