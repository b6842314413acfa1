"""Run configuration: names, types, ranges, presets, sections, and what resume may change."""

import dataclasses

import pytest

from evo_nas import config as configs
from evo_nas import spaces
from evo_nas.errors import ConfigError


def test_from_mapping_coerces_types_and_rejects_unknown_names():
    cfg = configs.from_mapping({"population": "12", "epochs": 0.5, "objectives": "accuracy,macs", "hparams": "yes",
                                "seed-genomes": ["a.yaml", "b.yaml"]})
    assert cfg.search.population == 12 and cfg.train.epochs == 0.5 and cfg.space.hparams is True
    assert cfg.search.objectives == ("accuracy", "macs") and cfg.search.seed_genomes == ("a.yaml", "b.yaml")
    layers = configs.from_mapping({"space": "layers", "filter_counts": "16, 32", "kernel_sizes": [3, 5]})
    assert layers.space.options["filter_counts"] == (16, 32) and layers.space.options["kernel_sizes"] == (3, 5)
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
    ({"space": "layers", "min_layers": 9, "max_layers": 3}, "min_layers: 9 is above max_layers 3"),
    ({"ops": "sep_conv_3x3,conv_9x9"}, "ops: conv_9x9 is not an op of the cells space"),
    ({"space": "layers", "ops": "sep_conv_3x3"}, "ops: not an option of the layers space"),
    ({"space": "nb201", "blocks": 3}, "blocks: not an option of the nb201 space"),
    ({"space": "layers", "kernel_sizes": "1,2,3"}, "kernel_sizes: must be odd positive sizes"),
    ({"space": "layers", "filter_counts": "16,x"}, "filter_counts: expected tuple[int, ...]"),
    ({"space": "layers", "init_channels": 8}, "init_channels: does not apply to the layers space"),
    ({"space": "nb201", "auxiliary": True}, "auxiliary: does not apply to the nb201 space"),
    ({"optimizer": "lamb"}, "optimizer: must be one of sgd, rmsprop, adam"),
])
def test_bad_values_are_one_line_naming_the_setting(values, message):
    with pytest.raises(ConfigError) as err:
        configs.from_mapping(values, "here")
    assert message in str(err.value) and "\n" not in str(err.value) and str(err.value).startswith("here: ")


def test_presets_fill_only_what_is_left_open():
    cpu = configs.from_mapping({"population": 20}, device="cpu")
    assert cpu.search.population == 20 and cpu.train.batch_size == configs.PRESETS["cpu"]["batch_size"]
    assert cpu.device == "cpu" and cpu.stop.generations == configs.PRESETS["cpu"]["generations"]
    assert (cpu.skeleton.init_channels, cpu.skeleton.depth) == (8, 2)  # the cell space's CPU proxy
    assert (cpu.data.train_limit, cpu.data.val_limit) == (3000, None)  # ... with its own data sizes
    assert configs.from_mapping({"val_limit": 500}, device="cpu").data.val_limit == 500
    budget = configs.from_mapping({"budget": 30}, device="cuda")
    assert budget.stop.generations is None and budget.data.train_limit is None
    assert (budget.skeleton.init_channels, budget.skeleton.depth) == (16, 8)
    nb = configs.from_mapping({"space": "nb201"}, device="cpu")
    assert (nb.skeleton.init_channels, nb.skeleton.depth) == (16, 5)
    assert (nb.data.train_limit, nb.data.val_limit) == (1200, 500)  # the general CPU preset
    layers = configs.from_mapping({"space": "layers"}, device="cpu")
    assert (layers.skeleton.init_channels, layers.skeleton.depth) == (None, None)  # a layer stack sets its own
    # the layer space's own CPU proxy (docs/layers.md), under what a flag gives
    assert (layers.data.train_limit, layers.data.val_limit, layers.train.batch_size) == (4500, None, 32)
    assert configs.from_mapping({"space": "layers", "batch_size": 64}, device="cpu").train.batch_size == 64
    assert configs.from_mapping({"space": "layers"}, device="cuda").train.batch_size == 512  # GPU: the presets'


def test_the_resolved_config_round_trips_through_its_sections():
    cfg = configs.from_mapping({"space": "layers", "max_layers": 6, "lr": 0.3}, device="cpu",
                               data_shape=((1, 28, 28), 10), cpu_threads=2)
    nested = configs.to_dict(cfg)
    assert set(nested) == set(configs.GROUPS) and nested["space"]["options"]["max_layers"] == 6
    assert configs.from_mapping(nested, device="cpu") == cfg
    assert configs.flat_config(nested)["lr"] == 0.3 and configs.flat(cfg)["max_layers"] == 6


def test_every_setting_has_one_name_and_a_help_line():
    for name, (_group, f) in configs.leaves().items():
        assert f.metadata.get("help"), name
    space_options = {f.name for entry in spaces.REGISTRY.values() for f in entry.space.options()}
    plain = {f.name for cls in configs.GROUPS.values() for f in dataclasses.fields(cls)}
    assert not space_options & plain  # a flat name means one thing


def test_resume_may_extend_the_budget_but_not_change_results():
    old = configs.from_mapping({}, device="cpu")
    original = configs.results_part(old)
    longer = dataclasses.replace(old, stop=dataclasses.replace(old.stop, generations=10),
                                 backend=dataclasses.replace(old.backend, backend="local"))
    assert configs.resume_changes(original, longer) == []
    other = dataclasses.replace(old, train=dataclasses.replace(old.train, lr=0.2))
    assert configs.resume_changes(original, other) == ["lr"]
