"""Genome values and genome files: round trips and one-line validation errors."""

import random

import pytest

from evo_nas.errors import GenomeError
from evo_nas.genome_io import dumps, load_genome, loads, save_genome
from evo_nas.spaces import parse_genome
from evo_nas.spaces.cells import CellSpace
from evo_nas.spaces.hparams import HParamSpace
from evo_nas.spaces.layers import LayerSpace
from evo_nas.spaces.nb201 import NB201Genome, NB201Space

SPACES = [CellSpace(), LayerSpace(), NB201Space(), CellSpace(hparams=HParamSpace()),
          LayerSpace(hparams=HParamSpace()), NB201Space(hparams=HParamSpace())]


def test_shipped_genome_files_round_trip_byte_for_byte(genomes_dir):
    files = sorted(genomes_dir.glob("*.yaml"))
    assert {f.stem for f in files} >= {"nasnet_a", "amoebanet_a", "darts_v1", "darts_v2",
                                       "zoph_le_baseline", "nb201_resnet"}
    for path in files:
        genome = load_genome(path)
        assert dumps(genome) == path.read_text(), path
        assert genome.source, f"{path} must name its source"
        assert path.read_text().startswith("# source: ")


@pytest.mark.parametrize("space", SPACES, ids=lambda s: f"{s.name}{'+hp' if s.hparams else ''}")
def test_random_genomes_round_trip_through_file_and_dict(space, tmp_path):
    rng = random.Random(7)
    for _ in range(50):
        genome = space.sample(rng)
        assert loads(dumps(genome)) == genome
        assert parse_genome(genome.to_dict()) == genome
        assert hash(loads(dumps(genome))) == hash(genome)
        space.validate(genome)
    path = save_genome(genome, tmp_path / "g.yaml")
    assert load_genome(path) == genome


def test_save_refuses_to_overwrite(tmp_path):
    genome = NB201Space().sample(random.Random(0))
    path = save_genome(genome, tmp_path / "g.yaml")
    with pytest.raises(GenomeError, match="already exists"):
        save_genome(NB201Space().sample(random.Random(1)), path)
    assert load_genome(path) == genome


def test_nb201_arch_string_in_and_out():
    text = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
    genome = NB201Genome.from_arch_string(text)
    assert genome.edges == ("nor_conv_3x3", "none", "nor_conv_3x3", "skip_connect", "none", "skip_connect")
    assert genome.arch_string == text
    assert genome.describe() == text


CELL_FILE = """space: cells
normal:
  blocks:
  - [[sep_conv_3x3, 0], [sep_conv_3x3, 1]]
  - [[skip_connect, 0], [dil_conv_3x3, 2]]
reduce:
  blocks:
  - [[max_pool_3x3, 0], [max_pool_3x3, 1]]
  - [[skip_connect, 2], [max_pool_3x3, 1]]
"""


@pytest.mark.parametrize("edit, field", [
    (("dil_conv_3x3, 2", "dil_conv_9x9, 2"), "normal.blocks[1][1]: unknown op 'dil_conv_9x9'"),
    (("dil_conv_3x3, 2", "dil_conv_3x3, 3"), "normal.blocks[1][1]: input 3 points forward"),
    (("skip_connect, 2", "skip_connect, -1"), "reduce.blocks[1][0]: input -1 is negative"),
    (("[max_pool_3x3, 0], [max_pool_3x3, 1]", "[max_pool_3x3, 0]"), "reduce.blocks[0]: must be two branches"),
    (("[sep_conv_3x3, 0], [sep_conv_3x3, 1]", "[sep_conv_3x3, x], [sep_conv_3x3, 1]"),
     "normal.blocks[0][0]: must be [op, input]"),
    (("reduce:\n", "reduce:\n  extra: 1\n"), "reduce.extra: unknown key"),
    (("space: cells\n", "space: cells\ncolour: blue\n"), "colour: unknown key"),
    (("space: cells", "space: cellz"), "space: must be one of"),
    (("  - [[skip_connect, 0], [dil_conv_3x3, 2]]\n", "  - [[skip_connect, 0], [dil_conv_3x3, 2]]\n  concat: [2, 2]\n"),
     "normal.concat: lists a state twice"),
    (("  - [[skip_connect, 0], [dil_conv_3x3, 2]]\n", "  - [[skip_connect, 0], [dil_conv_3x3, 2]]\n  concat: [1]\n"),
     "normal.concat: state 1 is out of range"),
    (("blocks:\n  - [[max", "blocks: [\n  - [[max"), "not valid YAML"),
])
def test_bad_cell_files_give_one_line_naming_file_and_field(tmp_path, edit, field):
    path, message = rejected(tmp_path, CELL_FILE.replace(*edit, 1))
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert field in message


def rejected(tmp_path, text: str) -> tuple:
    """Write a genome file, load it, and return (path, the GenomeError's message)."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(GenomeError) as err:
        load_genome(path)
    return path, str(err.value)


@pytest.mark.parametrize("layers, field", [
    ("- {height: 3, width: 3, filters: 24, inputs: [0, 0]}", "layers[0].inputs: duplicate input"),
    ("- {height: 3, width: 3, filters: 24, inputs: [1]}", "layers[0].inputs: state 1 points forward"),
    ("- {height: 3, width: 3, filters: 24, inputs: []}", "layers[0].inputs: must name at least one"),
    ("- {height: 4, width: 3, filters: 24, inputs: [0]}", "layers[0].height: must be odd"),
    ("- {height: 3, width: 3, filters: 2.5, inputs: [0]}", "layers[0].filters: must be an integer"),
    ("- {height: 3, width: 3, filters: 24, inputs: [0], stride: 2}", "layers[0].stride: unknown key"),
    ("- {height: 3, width: 3, filters: 24, inputs: [1, 0]}", "layers[0].inputs: must be sorted"),
])
def test_bad_layer_files(tmp_path, layers, field):
    path, message = rejected(tmp_path, f"space: layers\nlayers:\n{layers}\n")
    assert message.startswith(f"{path}: ") and field in message


@pytest.mark.parametrize("arch, field", [
    ("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|", "expected 3 groups"),
    ("|conv~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|", "edge 0 has unknown op 'conv'"),
    ("|nor_conv_3x3~1|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|", "should come from node 0"),
])
def test_bad_nb201_files(tmp_path, arch, field):
    path, message = rejected(tmp_path, f"space: nb201\narch: '{arch}'\n")
    assert message.startswith(f"{path}: arch: ") and field in message


def test_hparams_are_checked(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("space: nb201\narch: '|none~0|+|none~0|none~1|+|none~0|none~1|none~2|'\n"
                    "hparams: {lr: 0.1, weight_decay: 1e-4, dropout: 0.0, optimizer: lion}\n")
    with pytest.raises(GenomeError, match="hparams.optimizer"):
        load_genome(path)
    path.write_text(path.read_text().replace("lion", "adam"))
    assert load_genome(path).hparams.weight_decay == 1e-4  # YAML reads 1e-4 as a string


def test_space_rules_beyond_structure(genomes_dir):
    darts = load_genome(genomes_dir / "darts_v2.yaml")  # 4 blocks per cell
    CellSpace(blocks=4).validate(darts)
    with pytest.raises(GenomeError, match="normal.blocks: has 4 blocks, this space has 5"):
        CellSpace(blocks=5).validate(darts, "seed")
    with pytest.raises(GenomeError, match="not in this space's op set"):
        CellSpace(blocks=4, ops=("sep_conv_3x3", "skip_connect")).validate(darts)
    with pytest.raises(GenomeError, match="space: genome is for 'cells'"):
        NB201Space().validate(darts)
    with pytest.raises(GenomeError, match="hparams: missing"):
        CellSpace(blocks=4, hparams=HParamSpace()).validate(darts)
    baseline = load_genome(genomes_dir / "zoph_le_baseline.yaml")
    with pytest.raises(GenomeError, match=r"layers\[0\].filters: 36 is not one of"):
        LayerSpace(filter_counts=(24, 48)).validate(baseline)
