"""The op tables against docs/reference-cells.md: shapes, structure, parameter counts."""

import pytest
import torch
from torch import nn

from evo_nas.ops import NB201_OPS_TABLE, OPS, DropPath, FactorizedReduce, ReLUConvBN, Zero
from evo_nas.spaces.cells import OPS as CELL_OPS
from evo_nas.spaces.nb201 import OPS as NB201_OPS

C = 8


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_tables_cover_the_genome_vocabularies():
    assert set(OPS) == set(CELL_OPS) | {"none"}
    assert set(NB201_OPS_TABLE) == set(NB201_OPS)


@pytest.mark.parametrize("table", [OPS, NB201_OPS_TABLE], ids=["cells", "nb201"])
@pytest.mark.parametrize("size", [8, 7, 14])
@pytest.mark.parametrize("stride", [1, 2])
def test_every_op_keeps_channels_and_maps_h_to_ceil_h_over_stride(table, size, stride):
    x = torch.randn(2, C, size, size + 1)
    expected = (2, C, -(-size // stride), -(-(size + 1) // stride))
    for name, make in table.items():
        assert make(C, stride, True)(x).shape == expected, name


@pytest.mark.parametrize("name", sorted(OPS))
def test_convs_have_no_bias_and_bns_are_affine_with_running_stats(name):
    for stride in (1, 2):
        for m in OPS[name](C, stride, True).modules():
            if isinstance(m, nn.Conv2d):
                assert m.bias is None
            if isinstance(m, nn.BatchNorm2d):
                assert m.affine and m.track_running_stats


@pytest.mark.parametrize("k", [3, 5, 7])
def test_sep_conv_is_the_separable_conv_twice_strided_once(k):
    op = OPS[f"sep_conv_{k}x{k}"](C, 2, True)
    convs = [m for m in op.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size, m.stride, m.groups) for m in convs] == [
        ((k, k), (2, 2), C), ((1, 1), (1, 1), 1), ((k, k), (1, 1), C), ((1, 1), (1, 1), 1)]
    assert sum(isinstance(m, nn.ReLU) for m in op.modules()) == 2
    assert n_params(op) == 2 * (C * k * k + C * C + 2 * C)


@pytest.mark.parametrize("k", [3, 5])
def test_dil_conv_is_one_dilated_separable_conv(k):
    op = OPS[f"dil_conv_{k}x{k}"](C, 1, True)
    convs = [m for m in op.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size, m.dilation, m.groups) for m in convs] == [((k, k), (2, 2), C), ((1, 1), (1, 1), 1)]
    assert n_params(op) == C * k * k + C * C + 2 * C


def test_conv_7x1_1x7_strides_each_axis_in_its_own_conv():
    op = OPS["conv_7x1_1x7"](C, 2, True)
    convs = [m for m in op.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.kernel_size, m.stride) for m in convs] == [((1, 7), (1, 2)), ((7, 1), (2, 1))]
    assert n_params(op) == 2 * 7 * C * C + 2 * C


def test_pools_have_no_parameters_and_avg_pool_ignores_padding():
    ones = torch.ones(1, C, 8, 8)
    for table in (OPS, NB201_OPS_TABLE):
        avg = table["avg_pool_3x3"](C, 1, True)
        assert n_params(avg) == 0
        assert torch.equal(avg(ones), ones)  # count_include_pad=True would give 4/9 in corners
    assert n_params(OPS["max_pool_3x3"](C, 2, True)) == 0


def test_skip_connect_is_identity_at_stride_1_and_factorized_reduce_at_stride_2():
    assert isinstance(OPS["skip_connect"](C, 1, True), nn.Identity)
    assert isinstance(OPS["skip_connect"](C, 2, True), FactorizedReduce)


def test_factorized_reduce_matches_the_darts_crop_at_even_sizes():
    torch.manual_seed(0)
    fr = FactorizedReduce(C, 2 * C).eval()
    x = torch.randn(2, C, 8, 8)
    r = torch.relu(x)
    darts = fr.bn(torch.cat([fr.conv_1(r), fr.conv_2(r[:, :, 1:, 1:])], dim=1))
    assert torch.allclose(fr(x), darts)
    assert n_params(fr) == 2 * C * C + 2 * 2 * C
    assert fr(torch.randn(2, C, 7, 7)).shape == (2, 2 * C, 4, 4)


def test_nb201_ops():
    assert isinstance(NB201_OPS_TABLE["nor_conv_3x3"](C, 1, True), ReLUConvBN)
    assert n_params(NB201_OPS_TABLE["nor_conv_3x3"](C, 1, True)) == 9 * C * C + 2 * C
    assert n_params(NB201_OPS_TABLE["nor_conv_1x1"](C, 1, True)) == C * C + 2 * C
    assert isinstance(NB201_OPS_TABLE["skip_connect"](C, 1, True), nn.Identity)
    assert n_params(NB201_OPS_TABLE["none"](C, 1, True)) == 0


def test_zero_respects_stride():
    x = torch.randn(2, C, 7, 8)
    out = Zero(2)(x)
    assert out.shape == (2, C, 4, 4) and not out.any()
    assert OPS["none"](C, 1, True)(x).shape == x.shape


class TestDropPath:
    def test_identity_in_eval_mode(self):
        x = torch.randn(16, C, 4, 4)
        assert torch.equal(DropPath(0.5).eval()(x), x)

    def test_drops_whole_samples_and_rescales_the_rest(self):
        torch.manual_seed(0)
        x = torch.randn(400, C, 2, 2)
        out = DropPath(0.25).train()(x)
        dropped = (out == 0).flatten(1).all(dim=1)
        kept = ~dropped
        assert torch.allclose(out[kept], x[kept] / 0.75)
        assert 0.15 < dropped.float().mean().item() < 0.35

    def test_set_p_changes_the_buffer_in_place_and_p_zero_is_identity(self):
        drop = DropPath(0.5).train()
        buffer = drop.p
        drop.set_p(0.0)
        assert drop.p is buffer and buffer.item() == 0.0
        x = torch.randn(8, C, 2, 2)
        assert torch.equal(drop(x), x)
        assert "p" not in drop.state_dict()  # not saved: a trainer's schedule sets it

    @pytest.mark.parametrize("p", [-0.1, 1.0])
    def test_rejects_p_outside_0_1(self, p):
        with pytest.raises(ValueError):
            DropPath(p)
