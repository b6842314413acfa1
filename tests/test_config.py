"""Run configuration: names, types, ranges, presets, and what resume may change."""

import pytest

from evo_nas import config as configs
from evo_nas.errors import ConfigError


def test_from_mapping_coerces_types_and_rejects_unknown_names():
    cfg = configs.from_mapping({"population": "12", "epochs": 0.5, "objectives": "accuracy,macs", "hparams": "yes",
                                "seed-genomes": ["a.yaml", "b.yaml"]})
    assert cfg.population == 12 and cfg.epochs == 0.5 and cfg.hparams is True
    assert cfg.objectives == ("accuracy", "macs") and cfg.seed_genomes == ("a.yaml", "b.yaml")
    assert configs.from_mapping({"filter_counts": "16, 32", "kernel_sizes": [3, 5]}).filter_counts == (16, 32)
    with pytest.raises(ConfigError, match="^cfg.yaml: colour: unknown setting"):
        configs.from_mapping({"colour": 1}, "cfg.yaml")


@pytest.mark.parametrize("values, message", [
    ({"population": 0}, "population: must be positive"),
    ({"population": 2.5}, "population: expected int"),
    ({"space": "graphs"}, "space: must be one of cells, layers, nb201"),
    ({"objectives": "accuracy,latency"}, "objectives: must be distinct names"),
    ({"val_fraction": 1.5}, "val_fraction: must be between 0 and 1"),
    ({"algorithm": "aging", "population": 4, "sample": 5}, "sample: tournament size 5 exceeds"),
    ({"algorithm": "aging", "objectives": "macs"}, "aging evolution optimises accuracy"),
    ({"min_layers": 9, "max_layers": 3}, "min_layers: 9 is above max_layers 3"),
    ({"ops": "sep_conv_3x3,conv_9x9"}, "ops: conv_9x9 is not an op of the cells space"),
    ({"space": "layers", "ops": "sep_conv_3x3"}, "ops: the layers space has no op set"),
    ({"kernel_sizes": "1,2,3"}, "kernel_sizes: must be odd positive sizes"),
    ({"filter_counts": "16,x"}, "filter_counts: expected tuple[int, ...]"),
])
def test_bad_values_are_one_line_naming_the_setting(values, message):
    with pytest.raises(ConfigError) as err:
        configs.from_mapping(values, "here")
    assert message in str(err.value) and "\n" not in str(err.value) and str(err.value).startswith("here: ")


def test_presets_fill_only_what_is_left_open():
    cpu = configs.resolve(configs.RunConfig(population=20), "cpu")
    assert cpu.population == 20 and cpu.init_channels == configs.PRESETS["cpu"]["init_channels"]
    assert cpu.device == "cpu" and cpu.generations == configs.PRESETS["cpu"]["generations"]
    budget = configs.resolve(configs.RunConfig(budget=30), "cuda")
    assert budget.generations is None and budget.train_limit is None
    nb = configs.resolve(configs.RunConfig(space="nb201"), "cpu")
    assert (nb.init_channels, nb.layers) == (16, 5)


def test_resume_may_extend_the_budget_but_not_change_results():
    old = configs.resolve(configs.RunConfig(), "cpu")
    import dataclasses

    assert configs.resume_changes(old, dataclasses.replace(old, generations=10, backend="local")) == []
    assert configs.resume_changes(old, dataclasses.replace(old, lr=0.2)) == ["lr"]
