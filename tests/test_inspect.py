"""evonas inspect through click's CliRunner: published counts, JSON, and its errors."""

import json

import pytest
from click.testing import CliRunner

from evo_nas.cli import cli, main


def test_darts_v2_in_the_cifar_skeleton_has_the_published_counts(genomes_dir):
    result = CliRunner().invoke(cli, ["inspect", str(genomes_dir / "darts_v2.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["params"] == 3_349_342 and isinstance(summary["macs"], int)
    assert abs(summary["macs"] - 528e6) / 528e6 < 0.01
    assert summary["output_shape"] == [10] and summary["space"] == "cells"


def test_text_summary_and_options(genomes_dir):
    result = CliRunner().invoke(cli, ["inspect", str(genomes_dir / "nb201_resnet.yaml"), "--input-shape", "1x28x28",
                                      "--classes", "10", "--init-channels", "8", "--depth", "1"])
    assert result.exit_code == 0, result.output
    assert "ResNet (NB201 cell)" in result.output and "params" in result.output
    assert "1x28x28 -> output 10" in result.output
    layers = CliRunner().invoke(cli, ["inspect", str(genomes_dir / "zoph_le_baseline.yaml"), "--json",
                                      "--input-shape", "1x28x28"])
    assert json.loads(layers.output)["structure"] == {"stride 2": "layers [2, 4]"}


@pytest.mark.parametrize("args, message", [
    (["--input-shape", "3x32"], "--input-shape: expected CxHxW"),
    (["--input-shape", "0x32x32"], "--input-shape: sizes must be positive"),
    (["--classes", "ten"], "Invalid value for '--classes'"),
])
def test_bad_options_are_one_line_and_exit_2(genomes_dir, capsys, args, message):
    code = main(["inspect", str(genomes_dir / "darts_v2.yaml"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]


def test_a_bad_genome_file_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("space: nb201\narch: '|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|'\n")
    code = main(["inspect", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and f"{bad}: arch: edge 0 has unknown op 'conv'" in err[0]


def test_darts_v2_in_the_imagenet_skeleton_has_the_darts_reference_counts(genomes_dir):
    result = CliRunner().invoke(cli, ["inspect", str(genomes_dir / "darts_v2.yaml"), "--skeleton", "imagenet", "--json",
                                      "--cpu-threads", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert (summary["params"], summary["macs"]) == (4_718_752, 529_911_552)  # tests/test_imagenet.py's oracle
    assert summary["input_shape"] == [3, 224, 224] and summary["output_shape"] == [1000]
    assert summary["skeleton"] == {"name": "imagenet", "stem": "imagenet", "init_channels": 48, "depth": 14,
                                   "auxiliary": True}


def test_compare_places_the_genome_among_the_published_architectures(genomes_dir, tmp_path):
    figure = tmp_path / "placed.html"
    result = CliRunner().invoke(cli, ["inspect", str(genomes_dir / "amoebanet_a.yaml"), "--compare",
                                      "--figure", str(figure)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "3x32x32 -> output 10" in out  # the genome itself: its CIFAR skeleton, as without --compare
    assert "AmoebaNet-A in DARTS' ImageNet network (C=48, 14 cells, 224x224) has 4.63M params and 527M MACs, " \
           "under the 600M limit" in out
    for name in ("Inception-v1", "MobileNet-v2", "PNASNet-5", "DARTS (V2)"):
        assert name in out
    assert "4,627,360" in out and f"figure: {figure}" in out
    page = figure.read_text()
    assert "<h1>AmoebaNet-A among the published ImageNet architectures</h1>" in page
    assert page.count('class="plotly-graph-div"') == 2 and "Plotly.newPlot" in page


def test_compare_counts_in_the_imagenet_skeleton_inspected(genomes_dir):
    result = CliRunner().invoke(cli, ["inspect", str(genomes_dir / "darts_v2.yaml"), "--skeleton", "imagenet",
                                      "--init-channels", "40", "--compare", "--json"])
    compare = json.loads(result.output)["compare"]
    assert compare["skeleton"]["init_channels"] == 40 and compare["own"]["macs"] == json.loads(result.output)["macs"]
    assert compare["own"]["macs"] < 529_911_552 and compare["mobile"] is True


@pytest.mark.parametrize("genome, args, message", [
    ("darts_v2", ["--input-shape", "3x224x224"],
     "input_shape: 3x224x224 images need stem imagenet (--stem imagenet, or in inspect and train --skeleton "
     "imagenet): the cifar stem keeps the full resolution, for images up to 64 px"),
    ("darts_v2", ["--skeleton", "imagenet", "--input-shape", "3x32x32"], "stem: imagenet divides 3x32x32 images by 8"),
    ("nb201_resnet", ["--skeleton", "imagenet"], "--skeleton: nb201 genomes have no skeleton 'imagenet'"),
    ("nb201_resnet", ["--compare"], "--compare: the published ImageNet figures are of cell networks"),
    ("darts_v2", ["--skeleton", "mobile"], "Invalid value for '--skeleton'"),
    ("darts_v2", ["--cpu-threads", "0"], "cpu_threads: must be positive, got 0"),
])
def test_a_skeleton_that_does_not_fit_is_one_line_and_exit_2(genomes_dir, capsys, genome, args, message):
    code = main(["inspect", str(genomes_dir / f"{genome}.yaml"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0]


def test_an_unwritable_figure_is_one_line_and_exit_2(genomes_dir, tmp_path, capsys):
    code = main(["inspect", str(genomes_dir / "darts_v2.yaml"), "--figure", str(tmp_path / "no" / "such.html")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--figure: cannot write" in err[0]
