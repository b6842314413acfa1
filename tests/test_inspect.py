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
