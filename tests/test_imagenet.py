"""The ImageNet (mobile) setting: DARTS' NetworkImageNet counted against DARTS' reference code,
the stem and image size checks, the published figures and the lecture's two figures."""

import json

import pytest
import torch
from torch import nn

from evo_nas import spaces
from evo_nas.build import build
from evo_nas.cli import main
from evo_nas.config import Skeleton, from_mapping
from evo_nas.errors import ConfigError
from evo_nas.evaluate.count import Counts, build_meta, count
from evo_nas.fulltrain import FullTrainConfig
from evo_nas.genome_io import load_genome
from evo_nas.published import EVONAS_IMAGENET, PUBLISHED
from evo_nas.report import lecture
from tests.conftest import GENOMES
from tests.evaluate.test_count import flop_counter_macs

IMAGENET = Skeleton(**spaces.REGISTRY["cells"].skeletons["imagenet"])

# The oracle: quark0/darts cnn/model.py, NetworkImageNet(48, 1000, 14, auxiliary=True, genotype)
# with the genotypes of cnn/genotypes.py, run beside evonas: trainable parameters outside
# `auxiliary_head`, and forward hooks on every Conv2d and Linear (out.numel() x in/groups x kh x
# kw; out.numel() x in_features) during one eval-mode pass of a 224x224 image.
DARTS_REFERENCE = {"nasnet_a": Counts(5_564_320, 604_031_616), "amoebanet_a": Counts(4_627_360, 526_746_624),
                   "darts_v1": Counts(4_510_432, 505_864_704), "darts_v2": Counts(4_718_752, 529_911_552)}
DARTS_AUX_PARAMS = 1_260_776  # the same code's AuxiliaryHeadImageNet(768 channels, 1000 classes)


@pytest.mark.parametrize("name", sorted(DARTS_REFERENCE))
def test_published_cells_have_the_darts_reference_counts_in_the_imagenet_skeleton(name):
    counts = count(load_genome(GENOMES / f"{name}.yaml"), IMAGENET)
    print(f"{name}: {counts.params:,} params, {counts.macs:,} MACs")
    assert counts == DARTS_REFERENCE[name]
    assert EVONAS_IMAGENET[name] == (counts.params, counts.macs)  # the figures' data is current


def test_darts_v2_imagenet_network_runs_as_darts_builds_it():
    """A real forward at 224x224: flop_counter agrees, and the maps are DARTS' sizes."""
    model = build(load_genome(GENOMES / "darts_v2.yaml"), IMAGENET)
    sizes = {}
    for name in ("stem0", "stem1", "cells.3", "cells.4", "cells.9", "cells.13"):
        model.get_submodule(name).register_forward_hook(lambda m, i, out, name=name: sizes.update({name: out.shape}))
    assert flop_counter_macs(model, IMAGENET.input_shape) == DARTS_REFERENCE["darts_v2"].macs
    assert sizes == {"stem0": (1, 48, 56, 56), "stem1": (1, 48, 28, 28), "cells.3": (1, 192, 28, 28),
                     "cells.4": (1, 384, 14, 14), "cells.9": (1, 768, 7, 7), "cells.13": (1, 768, 7, 7)}
    head = model.auxiliary_head
    assert sum(p.numel() for p in head.parameters()) == DARTS_AUX_PARAMS
    assert isinstance(head[1], nn.AvgPool2d) and head[1].stride == 2  # DARTS' pool: 7x7 -> 2x2
    assert not any(isinstance(m, nn.BatchNorm2d) and m.num_features == 768 for m in head)  # as DARTS' runs


def test_a_small_imagenet_network_trains_with_its_auxiliary_head():
    sk = Skeleton(input_shape=(3, 72, 72), classes=5, init_channels=4, depth=3, stem="imagenet", auxiliary=True)
    model = build(load_genome(GENOMES / "darts_v2.yaml"), sk).train()
    logits, aux = model(torch.randn(2, *sk.input_shape))
    (logits.sum() + aux.sum()).backward()
    assert logits.shape == aux.shape == (2, 5)
    assert isinstance(model.auxiliary_head[1], nn.AdaptiveAvgPool2d)  # its 3x3 map: not DARTS' 7x7


@pytest.mark.parametrize("shape", [(3, 224, 224), (3, 96, 64)])
def test_the_cifar_network_refuses_images_it_would_keep_at_full_resolution(shape):
    from evo_nas.build import build
    from evo_nas.genome_io import load_genome

    with pytest.raises(ConfigError, match=f"input_shape: {'x'.join(map(str, shape))} images need stem imagenet"):
        build(load_genome("darts_v2"), Skeleton(input_shape=shape))


@pytest.mark.parametrize("settings, message", [
    ({"stem": "imagenet"}, "stem: imagenet divides 3x32x32 images by 8"),
    ({"stem": "imagenet", "input_shape": (3, 224, 224), "stem_multiplier": 2}, "stem_multiplier: applies to the cifar"),
    ({"stem": "mobile"}, "stem: must be one of cifar, imagenet"),
])
def test_a_stem_and_an_image_size_that_do_not_fit_are_one_line_errors(settings, message):
    with pytest.raises(ConfigError, match=message) as err:
        Skeleton(**settings)
    assert "\n" not in str(err.value)


def test_the_stem_is_a_run_setting_of_the_cell_space_only():
    cfg = from_mapping({"stem": "imagenet", "init_channels": 8, "depth": 3}, data_shape=((3, 96, 96), 10))
    assert cfg.skeleton.stem == "imagenet"
    with pytest.raises(ConfigError, match="stem: does not apply to the nb201 space"):
        from_mapping({"space": "nb201", "stem": "imagenet"}, data_shape=((3, 96, 96), 10))
    # the other spaces' networks have no stem and take any size (a cost, not an error)
    assert from_mapping({"space": "nb201"}, data_shape=((3, 224, 224), 10)).skeleton.input_shape == (3, 224, 224)


def test_train_takes_the_named_skeleton_and_refuses_unknown_names():
    genome = load_genome(GENOMES / "darts_v2.yaml")
    cfg = FullTrainConfig(genome=genome, origin="x", out="unused", skeleton_name="imagenet", onnx=False)
    sk = cfg.skeleton_for((3, 96, 96), 10)
    assert (sk.stem, sk.init_channels, sk.depth, sk.auxiliary, sk.drop_path) == ("imagenet", 48, 14, True, 0.0)
    assert cfg.settings()["stem"] == "imagenet"
    with pytest.raises(ConfigError, match="nb201 genomes have no skeleton 'imagenet'"):
        FullTrainConfig(genome=load_genome(GENOMES / "nb201_resnet.yaml"), origin="x", out="y",
                        skeleton_name="imagenet")


def test_train_with_the_imagenet_skeleton_on_small_images_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "never"
    code = main(["train", str(GENOMES / "darts_v2.yaml"), "--skeleton", "imagenet", "--epochs", "1",
                 "--train-limit", "64", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "stem: imagenet divides 1x28x28 images by 8" in err[0]
    assert not out.exists()


def test_published_figures_carry_their_sources_and_show_darts_own_574m():
    assert {"NASNet-A", "AmoebaNet-A", "PNASNet-5", "DARTS (V2)", "MobileNet-v1", "MobileNet-v2",
            "ShuffleNet 2x (g=3)", "Inception-v1"} <= {p.name for p in PUBLISHED}
    for p in PUBLISHED:
        assert "Table" in p.source and p.checked and 60 < p.top1 < 80 and p.designed in ("search", "manual")
        assert p.genome is None or (GENOMES / f"{p.genome}.yaml").is_file()
    darts = next(p for p in PUBLISHED if p.name == "DARTS (V2)")
    assert darts.mult_adds == 574 and EVONAS_IMAGENET[darts.genome][1] == 529_911_552  # two counts, one network


def test_lecture_figures_place_the_published_points_and_evonas_counts():
    own = {"name": "found", "params": 3_000_000, "macs": 450_000_000}
    by_macs, by_params = lecture.figures([own])
    json.dumps([by_macs, by_params])  # plain data
    search = next(t for t in by_macs["data"] if t["name"].startswith("found by search"))
    nasnet = search["text"].index("NASNet-A")
    assert (search["x"][nasnet], search["y"][nasnet]) == (564, 74.0)
    evonas = next(t for t in by_params["data"] if t.get("name") == "the same cell, evonas's count")
    assert sorted(evonas["x"]) == sorted(EVONAS_IMAGENET[g][0] / 1e6 for g in ("nasnet_a", "amoebanet_a", "darts_v2"))
    line = next(t for t in by_macs["data"] if t.get("name") == "found (evonas's count)")
    assert line["x"] == [450.0, 450.0]
    rows = lecture.rows([own])
    assert [r["mult_adds_m"] for r in rows[:-1]] == sorted(p.mult_adds for p in PUBLISHED)
    assert rows[-1]["evonas_macs"] == 450_000_000 and rows[-1]["top1"] is None


def test_a_meta_built_imagenet_network_has_no_storage():
    model = build_meta(load_genome(GENOMES / "darts_v2.yaml"), IMAGENET)
    assert all(p.device.type == "meta" for p in model.parameters())
