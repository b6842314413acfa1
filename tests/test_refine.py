"""`evonas refine`: ranges narrowed around the best quarter of a hand-made history (numbers worked
out by hand), widened at a border the best values sit at, never past a hard limit; the new run's
settings and the command, dry and for real."""

import dataclasses
import math

import pytest

from evo_nas import config as configs
from evo_nas import refine
from evo_nas.cli import main
from evo_nas.errors import ConfigError
from evo_nas.genome import HParams
from evo_nas.records import History, Record, Result, Status
from evo_nas.spaces.hparams import HParamSpace
from evo_nas.spaces.nb201 import NB201Genome, NB201Space
from evo_nas.store import RunDir

SPACE = NB201Space(hparams=HParamSpace())
EDGES = ("nor_conv_3x3", "skip_connect", "none", "avg_pool_3x3", "nor_conv_1x1", "none")
# The best four (accuracy 0.9 and up): lr 0.01-0.04 in the middle of its range, weight decay at
# its upper edge, dropout near its hard lower limit, mostly sgd.
BEST = [(0.01, 0.0098, 0.0, "sgd"), (0.02, 0.0099, 0.0, "sgd"), (0.03, 0.01, 0.01, "adam"),
        (0.04, 0.0095, 0.3, "sgd")]
REST = [(lr, wd, 0.25, opt) for lr, wd, opt in zip((0.002, 0.3, 0.1, 0.005, 0.2, 0.08, 0.4, 0.003, 0.06, 0.15, 0.01,
                                                    0.5), (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 2e-3, 1e-5, 5e-5, 2e-4,
                                                           6e-4, 3e-3, 1e-4), ("rmsprop", "adam") * 6)]


def record(i: int, genes, accuracy: float | None, **more) -> Record:
    lr, wd, dropout, optimizer = genes
    genome = NB201Genome(edges=EDGES, hparams=HParams(lr, wd, dropout, optimizer))
    status = Status.OK if accuracy is not None else Status.FAILED
    return Record(i, 0, genome, SPACE.key(genome) + f"#{i}", Result(status, accuracy=accuracy, macs=1, params=1),
                  **more)


def history() -> History:
    records = [record(i, g, 0.9 + 0.01 * i) for i, g in enumerate(BEST)]
    records += [record(4 + i, g, 0.5 + 0.01 * i) for i, g in enumerate(REST)]
    records.append(record(16, (0.4, 1e-5, 0.1, "rmsprop"), None))  # failed: no say
    records.append(record(17, BEST[0], 0.9, cache_of=0))  # a cache hit: not a second vote
    return History(records)


def test_ranges_on_a_hand_made_history():
    space, changes = refine.refined(history(), HParamSpace())
    # lr: the best lie in 0.01..0.04, 10% of the old log-width (log 500) beyond: 0.01/500^0.1 = 0.005372
    # rounded down, 0.04*500^0.1 = 0.07446 rounded up.
    assert space.lr == (0.00537, 0.0745)
    # weight decay: the best sit at the upper edge 0.01, so it moves out by 25% of the log-width
    # (log 1000): 0.01*1000^0.25 = 0.05623 rounded up; below, 0.0095/1000^0.1 = 0.004761 rounded down.
    assert space.weight_decay == (0.00476, 0.0563)
    # dropout: most of the best sit at 0, a hard limit (never widened past); above, 0.3 + 0.05.
    assert space.dropout == (0.0, 0.35)
    assert space.optimizers == ("sgd", "adam")
    why = {c.gene: c.why for c in changes}
    assert why["lr"].startswith("the best 4 of 16 lie in 0.01 to 0.04") and "narrowed" in why["lr"]
    assert "most sit at the upper edge (0.01)" in why["weight_decay"] and "25% of the old width" in why["weight_decay"]
    assert "lower edge" not in why["dropout"] and "dropped rmsprop" in why["optimizer"]


def test_the_best_values_stay_inside_the_new_ranges():
    space, _ = refine.refined(history(), HParamSpace())
    for lr, wd, dropout, optimizer in BEST:
        SPACE.hparams.validate(HParams(lr, wd, dropout, optimizer), "old")
        space.validate(HParams(lr, wd, dropout, optimizer), "new")


def test_a_border_below_one_stops_halfway_to_it_and_above_zero_at_it():
    at_top = refine.numeric_change("dropout", [0.9, 0.89, 0.9, 0.5], (0.2, 0.9), False, (0.0, 1.0), 16)
    assert at_top.new == (0.43, 0.95)  # 0.9 + 0.25*0.7 = 1.075 is past 1: halfway from 0.9 to 1
    at_bottom = refine.numeric_change("dropout", [0.1, 0.1, 0.12, 0.3], (0.1, 0.5), False, (0.0, 1.0), 16)
    assert at_bottom.new == (0.0, 0.34)  # 0.1 - 0.25*0.4 = 0.0: allowed
    spanning = refine.numeric_change("lr", [1e-3, 0.5, 0.02, 0.01], (1e-3, 0.5), True, None, 8)
    assert spanning.new == (1e-3, 0.5) and "kept" in spanning.why


def test_rounding_never_moves_an_edge_inside_the_best_values():
    for values in ([0.0123456, 0.0234567], [1.23456e-4, 9.87654e-3], [0.111, 0.112]):
        change = refine.numeric_change("lr", values, (1e-5, 1.0), True, None, 20)
        assert change.new[0] <= min(values) and change.new[1] >= max(values)
        assert all(float(f"{x:.3g}") == x for x in change.new)
        assert math.log(change.new[1] / change.new[0]) > 0


def test_too_few_evaluations_say_nothing():
    with pytest.raises(ConfigError, match="at least 4"):
        refine.refined(History([record(i, g, 0.9) for i, g in enumerate(BEST[:3])]), HParamSpace())


TINY = {"space": "nb201", "init_channels": 4, "depth": 1, "train_limit": 96, "val_limit": 64, "bn_recalibration": 64,
        "batch_size": 32, "population": 4, "generations": 0, "report": False, "hparams": True}


def hand_made_run(tmp_path, **more) -> RunDir:
    """history() as the journal of a run that could have made it: 4 generations after the first,
    4 ids each (a reader leaves out a line no run of these settings can have written)."""
    cfg = configs.from_mapping({**TINY, "generations": 4, "runs_dir": str(tmp_path), "name": "old", **more},
                               data_shape=((1, 28, 28), 10))
    run = RunDir.create(tmp_path / "old", configs.to_dict(cfg), {"seed": 0})
    for r in history().records:
        run.append(dataclasses.replace(r, generation=max(0, (r.id - 4) // 4 + 1)))
    return run


def test_the_new_run_keeps_the_old_settings_but_the_ranges(tmp_path):
    run = hand_made_run(tmp_path, seed_genomes=())
    plan = refine.plan(run.path, {"generations": 2, "budget": None})
    assert plan.options["name"] == "old-refined" and plan.options["runs_dir"] == str(tmp_path)
    assert plan.options["lr_range"] == (0.00537, 0.0745) and plan.options["optimizers"] == ("sgd", "adam")
    assert plan.options["generations"] == 2 and plan.options["train_limit"] == 96 and plan.options["hparams"]
    lines = refine.describe(plan)
    assert lines[0].endswith("old-refined") and any(line.split()[0] == "weight_decay" for line in lines[1:])


def test_refine_refuses_a_run_without_hyperparameter_genes(tmp_path, capsys):
    run = hand_made_run(tmp_path, hparams=False)
    assert main(["refine", str(run.path), "--dry-run"]) == 2
    assert "did not search hyperparameters" in capsys.readouterr().err


@pytest.mark.slow
def test_the_command_prints_the_ranges_then_runs_them(tmp_path, capsys):
    run = hand_made_run(tmp_path)
    assert main(["refine", str(run.path), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "lr            0.001, 0.5  ->  0.00537, 0.0745" in printed and not (tmp_path / "old-refined").exists()
    assert main(["refine", str(run.path), "--name", "new", "--generations", "0"]) == 0
    new = RunDir.open(tmp_path / "new")
    assert new.config()["space"]["weight_decay_range"] == [0.00476, 0.0563]
    refined = HParamSpace.from_settings(configs.flat_config(new.config()))
    genomes = [r.genome for r in new.history().records]
    assert len(genomes) == 4
    for genome in genomes:
        refined.validate(genome.hparams, "new run")
