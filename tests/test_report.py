"""The report: front over the whole history, hypervolume per generation against pymoo, lineage,
the hyperparameter border rule, architecture drawings, repeats, the files it writes and what
`--out` refuses, bad input, and the page in headless Chromium.

Most tests use hand-written journals whose answers are known (`history`: NB201 genomes, a
seed, a failure, a cache hit, two rungs; `cells`: published and random cells; `repeated`:
individuals trained with several seeds); one uses a real tiny search (`real_run`). The browser
test opens them in Chromium, driven over the DevTools protocol (`Browser`, stdlib only), and
takes the README's screenshots (EVONAS_SCREENSHOTS=1 writes them to docs/images/).
"""

import html
import itertools
import json
import os
import random
import re
import select
import shutil
import statistics
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from base64 import b64decode
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from pymoo.indicators.hv import HV

from evo_nas import noise, pareto, report, store
from evo_nas.cli import cli, main
from evo_nas.genome import HParams
from evo_nas.genome_io import load_genome, loads
from evo_nas.records import Record, Result, Status
from evo_nas.report import data as rdata
from evo_nas.report import drawing, figures, shell
from evo_nas.report import html as report_html
from evo_nas.spaces import hparams as hp
from evo_nas.spaces import parse_genome
from evo_nas.spaces.cells import CellSpace, live_states
from evo_nas.spaces.layers import LayerSpace
from evo_nas.spaces.nb201 import OPS as NB201_OPS
from evo_nas.spaces.nb201 import NB201Genome, NB201Space
from evo_nas.store import RunDir
from tests.journal import journal_lines

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
REFERENCE = {"accuracy": 1.0, "macs": 1000, "params": 100}
ARCHS = list(itertools.product(NB201_OPS, repeat=6))
PROXY = {"epochs": 1.0, "train_limit": 1200, "val_limit": 500, "init_channels": 16, "depth": 1, "lr": 0.4,
         "batch_size": 64}
VERSIONS = {"evonas": "0.1.0", "torch": "2.13.0+cpu", "python": "3.11.7"}


def genome(i: int, hparams: HParams | None = None) -> NB201Genome:
    return NB201Genome(edges=ARCHS[i * 7919 % len(ARCHS)], hparams=hparams)


def make_run(path, records, hparams=False, objectives=("accuracy", "macs", "params"), reference=REFERENCE,
             space="nb201", **config):
    config = {"space": space, "algorithm": "nsga2", "dataset": "fashion-mnist", "device": "cpu",
              "objectives": list(objectives), "hparams": hparams, "fidelity": "sha", "sha_rungs": 2, **PROXY,
              **config}
    run = RunDir.create(path, config, {"seed": 0, "reference_point": reference, "objectives": list(objectives),
                                       "created": "2026-01-01T00:00:00", "versions": VERSIONS})
    for r in records:
        run.append(r)
    return run


def rec(i, gen, acc, macs, params, parents=(), op="mut_edge", status="ok", g=None, space=None, **extra) -> Record:
    g = g or genome(i)
    space = space or NB201Space()
    r = {"id": i, "rung": 0, "generation": gen, "key": space.key(g), "genome": g.to_dict(),
         "parents": list(parents), "operator": op if parents or op.startswith("seed") else "init",
         "status": status, "macs": macs, "params": params, "wall_time": 1.0 + i % 4,
         "finished": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}", **extra}
    if status == "ok":
        r["accuracy"] = acc
    return Record.from_json(r, f"test record {i}")


def history_hparams(i: int) -> HParams:
    lr = {1: 0.5, 9: 0.49, 4: 0.45}.get(i, 0.01)  # the three best sit at lr's upper edge (log scale)
    return HParams(lr=lr, weight_decay=10 ** -(2 + i % 3), dropout=0.0, optimizer="sgd")


def history_records(hparams=False) -> list[Record]:
    """Three generations with a seed, a failure, a cache hit, an infeasible one and two rungs.
    Front (accuracy, macs, params): 1, 9, 4, 8, 2 -- 1 and 2 from generation 0, which the last
    population (4, 8, 9, 10) no longer holds."""
    def g(i):
        return genome(i, history_hparams(i) if hparams else None)

    seed = replace(load_genome(ROOT / "genomes" / "nb201_resnet.yaml"), hparams=g(0).hparams)
    return [
        rec(0, 0, 0.60, 500, 50, op="seed:ResNet (NB201 cell)", g=seed),
        rec(1, 0, 0.90, 900, 90, g=g(1)), rec(2, 0, 0.50, 100, 10, g=g(2)), rec(3, 0, 0.40, 600, 60, g=g(3)),
        rec(4, 1, 0.70, 300, 30, [1], g=g(4)),
        rec(5, 1, None, 200, 20, [2, 4], "cx_uniform+mut_edge", "failed", g=g(5), error="out of memory"),
        rec(6, 1, 0.50, 100, 10, [2], g=g(2), cache_of=2),
        rec(7, 1, None, 5000, 500, [3], status="infeasible", g=g(7), error="macs over the limit"),
        rec(8, 2, 0.55, 150, 12, [6], g=g(8)),
        rec(9, 2, 0.30, 400, 40, [4, 8], "cx_uniform+mut_edge", g=g(9)),
        rec(9, 2, 0.80, 400, 40, [4, 8], "cx_uniform+mut_edge", g=g(9), rung=1),  # the final rung
        rec(10, 2, 0.20, 800, 80, [9], g=g(10)), rec(11, 2, 0.65, 350, 35, [4], g=g(11)),
    ]


@pytest.fixture
def history(tmp_path) -> RunDir:
    run = make_run(tmp_path / "history", history_records(hparams=True), hparams=True)
    run.save_snapshot(2, {"generation": 2, "next_id": 12, "population": [4, 8, 9, 10]})
    return run


def cells_records() -> list[Record]:
    """Four generations of cells: the four published cells as seeds, then seeded random cells with
    made-up accuracies that grow with size, and one failure. (Numbers are not measurements.)"""
    space, rng = CellSpace(), random.Random(5)
    seeds = [load_genome(ROOT / "genomes" / f"{n}.yaml") for n in ("nasnet_a", "amoebanet_a", "darts_v1", "darts_v2")]
    records = []
    for i in range(40):
        g = seeds[i] if i < len(seeds) else replace(space.sample_arch(rng), name="")
        generation = 0 if i < 10 else 1 + (i - 10) // 10
        parents = [rng.randrange(10 * (generation - 1) if generation > 1 else 0, 10 * generation)
                   for _ in range(rng.choice((1, 2)))] if generation else []
        macs = rng.randint(20, 120) * 10 ** 6
        params = macs // 160 + rng.randint(0, 100_000)
        accuracy = min(0.93, 0.55 + 0.2 * np.log10(macs / 1e7) + rng.gauss(0, 0.03))
        op = f"seed:{g.name}" if g.name else ("cx_uniform+mut_op" if len(parents) == 2 else "mut_op")
        status = "failed" if i == 23 else "ok"
        records.append(rec(i, generation, accuracy, macs, params, sorted(set(parents)), op, status, g=g,
                           space=space, **({"error": "loss is NaN at step 7"} if status == "failed" else {})))
    return records


@pytest.fixture
def cells(tmp_path) -> RunDir:
    return make_run(tmp_path / "cells", cells_records(), space="cells", fidelity="none", depth=8, reductions=2,
                    name="cells-demo", reference={"accuracy": 1.0, "macs": 2e8, "params": 1e6})


def repeated_records() -> list[Record]:
    """Three individuals trained with three seeds each (`--repeats 3`: one journal line per
    training, `repeat` 0-2); #1's second training failed."""
    accuracies = {0: (0.50, 0.54, 0.58), 1: (0.60, None, 0.64), 2: (0.70, 0.71, 0.75)}
    lines = []
    for i, values in accuracies.items():
        for k, acc in enumerate(values):
            status = "ok" if acc is not None else "failed"
            lines.append(rec(i, 0, acc, 100 * (i + 1), 10 * (i + 1), status=status, repeat=k,
                             **({"error": "out of memory"} if acc is None else {"train_loss": 2.0 - acc})))
    return lines


@pytest.fixture
def repeated(tmp_path) -> RunDir:
    return make_run(tmp_path / "repeated", repeated_records(), fidelity="none", repeats=3)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> RunDir:
    """A real search, as small as it gets: NB201 at C=4, a seed genome, 4 + 2 x 4 evaluations."""
    from evo_nas import runner

    return runner.start({"space": "nb201", "population": 4, "generations": 2, "train_limit": 32, "val_limit": 32,
                         "init_channels": 4, "depth": 1, "bn_recalibration": 0, "batch_size": 32, "device": "cpu",
                         "seed_genomes": (str(ROOT / "genomes" / "nb201_resnet.yaml"),), "report": False,
                         "runs_dir": str(tmp_path_factory.mktemp("runs")), "name": "tiny"})


# -- the data -------------------------------------------------------------------------------

def brute_front(points: dict[int, tuple]) -> set[int]:
    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and a != b
    return {i for i, p in points.items() if not any(dominates(q, p) for q in points.values())}


def test_front_is_over_the_whole_history(history):
    data = report.report_data(history)
    assert data.front == (1, 9, 4, 8, 2)  # best accuracy first
    assert {1, 2} <= set(data.front) and not {1, 2} & {4, 8, 9, 10}  # not only the last population
    assert data.individuals[9].accuracy == 0.80  # the highest rung is the final record
    assert 6 in data.individuals and 6 not in {e.id for e in data.evaluations}  # cache hit: not an evaluation
    ok = {e.id: pareto.vector(e.result, data.objectives) for e in data.evaluations if e.ok}
    assert set(data.front) == brute_front(ok)


def test_front_for_any_subset_of_objectives(tmp_path):
    for objectives in [("accuracy",), ("accuracy", "macs"), ("macs", "params"), ("accuracy", "params")]:
        run = make_run(tmp_path / "-".join(objectives), history_records(), objectives=objectives)
        data = report.report_data(run)
        ok = {e.id: pareto.vector(e.result, objectives) for e in data.evaluations if e.ok}
        assert set(data.front) == brute_front(ok), objectives


def test_the_fast_front_filter_matches_deaps_first_front():
    rng = random.Random(3)
    for n, d in itertools.product((1, 5, 40, 150), (1, 2, 3)):
        vectors = [tuple(rng.choice((0.1, 0.2, 0.3)) if rng.random() < 0.3 else rng.random() for _ in range(d))
                   for _ in range(n)]  # some ties and duplicates
        assert pareto.first_front(vectors) == pareto.nondominated_fronts(vectors)[0]  # DEAP's sort


def pymoo_hv(points, d) -> float:
    return float(HV(ref_point=np.ones(d))(np.array(points))) if points else 0.0


def test_hypervolume_per_generation_matches_pymoo(history):
    data = report.report_data(history)
    ref = data.reference
    assert ref == (1.0, 1000.0, 100.0)
    previous = -1.0
    for stats in data.generations:
        made = [e for e in data.evaluations if e.ok and e.generation <= stats.generation]
        points = [pareto.normalise(pareto.vector(e.result, data.objectives), ref) for e in made]
        assert stats.hypervolume == pytest.approx(pymoo_hv(points, 3), rel=1e-9)
        assert stats.hypervolume >= previous
        previous = stats.hypervolume
    assert [s.best_accuracy for s in data.generations] == [0.90, 0.90, 0.90]
    assert [s.generation_best for s in data.generations] == [0.90, 0.70, 0.80]
    assert [s.evaluations for s in data.generations] == [4, 3, 4]  # the cache hit is not one


@pytest.mark.parametrize("objectives", [("accuracy", "macs"), ("accuracy", "macs", "params")])
def test_hypervolume_on_random_runs_matches_pymoo(tmp_path, objectives):
    rng = random.Random(len(objectives))
    records = [rec(i, i // 10, rng.random(), rng.randint(10, 1200), rng.randint(1, 120)) for i in range(60)]
    data = report.report_data(make_run(tmp_path / "r", records, objectives=objectives))
    for stats in data.generations:
        points = [pareto.normalise(pareto.vector(e.result, objectives), data.reference)
                  for e in data.evaluations if e.generation <= stats.generation]
        assert stats.hypervolume == pytest.approx(pymoo_hv(points, len(objectives)), rel=1e-9)


def test_reference_point_comes_from_meta_not_from_the_points(tmp_path):
    records = history_records()
    small = report.report_data(make_run(tmp_path / "a", records))
    large = report.report_data(make_run(tmp_path / "b", records, reference={**REFERENCE, "macs": 2000}))
    assert large.generations[-1].hypervolume > small.generations[-1].hypervolume


def test_lineage_goes_back_to_the_first_population(history):
    data = report.report_data(history)
    assert data.lineage[9] == (9, 4, 8, 1, 6, 2)  # breadth first, through a cache hit (6)
    assert data.lineage[1] == (1,)
    assert report_html.lineage_text(data, 8) == "#8 mut_edge(#6) · #6 mut_edge(#2) [cache of #2] · #2 init"
    for chain in data.lineage.values():
        assert data.individuals[chain[-1]].generation == 0


def test_border_rule():
    lr = (1e-3, 0.5)
    # "within 5%" is measured in log space: 0.37 is 95% of the way from 1e-3 to 0.5 in log terms.
    assert hp.border_edges([0.5, 0.40, 0.2], lr, log=True) == ["upper"]
    assert hp.border_edges([0.5, 0.3, 0.2], lr, log=True) == []  # one of three is not most
    assert hp.border_edges([1e-3, 1.2e-3, 0.5, 0.45], lr, log=True) == ["lower", "upper"]
    assert hp.border_edges([0.48], lr, log=False) == ["upper"]
    assert hp.border_edges([0.02], lr, log=True) == []  # 0.02 is near 0 linearly, mid-range in log
    assert hp.border_edges([0.02], lr, log=False) == ["lower"]
    assert hp.border_edges([0.0, 0.01, 0.3], (0.0, 0.5), log=False, hard=(0.0, 1.0)) == []  # dropout 0
    assert hp.border_edges([], lr, log=True) == []


def test_best_candidates_are_the_top_quarter_at_least_three(history):
    data = report.report_data(history)
    assert data.best == (1, 9, 4)  # 3 of the 9 successful evaluations: a quarter, rounded up
    hparams = HParams(lr=0.01, weight_decay=1e-4, dropout=0.0, optimizer="sgd")
    evaluations = [Record(i, 0, genome(i, hparams), "", Result(Status.OK, accuracy=i / 100, macs=1, params=1))
                   for i in range(100)]
    assert [e.id for e in hp.best_candidates(evaluations)] == list(range(99, 74, -1))
    assert [e.id for e in hp.best_candidates(evaluations[:5])] == [4, 3, 2]


def test_the_reports_border_warning_and_refine_count_the_same_best_candidates(tmp_path):
    """The report once took the top 10% and `refine` the top quarter (issue 20)."""
    from evo_nas import refine

    rng = random.Random(2)
    records = [rec(i, 0, 0.5 + i / 100, 100, 10, g=genome(i, HParams(lr=0.5 if i >= 30 else rng.uniform(0.01, 0.1),
                                                                     weight_decay=1e-4, dropout=0.1, optimizer="sgd")))
               for i in range(40)]  # the best ten sit at lr's upper edge
    run = make_run(tmp_path / "r", records, hparams=True)
    warning = next(g.warning for g in report.report_data(run).genes if g.name == "lr")
    plan = refine.plan(run.path)
    why = next(c.why for c in plan.changes if c.gene == "lr")
    assert "most of the 10 best candidates sit at the upper edge (0.5)" in warning
    assert why.startswith("the best 10 of 40") and "most sit at the upper edge" in why


def test_the_report_uses_the_runs_own_hyperparameter_ranges(tmp_path):
    """`--hparams --lr-range 0.01,0.02` with the best at 0.0199: the report once showed the
    default range (0.001, 0.5) and no warning (issue 20)."""
    records = [rec(i, 0, 0.5 + i / 100, 100, 10, g=genome(i, HParams(lr=0.0199 if i >= 6 else 0.012 + i / 1000,
                                                                     weight_decay=1e-4, dropout=0.1, optimizer="adam")))
               for i in range(9)]
    run = make_run(tmp_path / "r", records, hparams=True, lr_range=[0.01, 0.02], weight_decay_range=[1e-5, 1e-3],
                   optimizers=["adam", "sgd"])
    genes = {g.name: g for g in report.report_data(run).genes}
    assert genes["lr"].bounds == (0.01, 0.02) and genes["weight_decay"].bounds == (1e-5, 1e-3)
    assert "the upper edge (0.02) of its range 0.01 to 0.02" in genes["lr"].warning
    assert genes["weight_decay"].warning is None and genes["dropout"].bounds == (0.0, 0.5)


def test_hparam_warning_names_the_gene_and_edge(history):
    data = report.report_data(history)
    warnings = {g.name: g.warning for g in data.genes}
    assert "upper edge (0.5)" in warnings["lr"] and "widen the range" in warnings["lr"]
    assert warnings["dropout"] is None  # all at 0, which is a hard limit
    assert warnings["weight_decay"] is None
    page = report.render_html(data)
    assert "class='warning'>⚠ learning rate: most of the 3 best candidates" in page


def test_the_hard_limits_are_the_spaces_own(history, monkeypatch):
    """HARD_LIMITS was written twice, in the space and in the report (issue 20): once now."""
    assert next(g for g in report.report_data(history).genes if g.name == "dropout").warning is None  # 0 is hard
    monkeypatch.setattr(hp.HParamSpace, "HARD_LIMITS", {})
    warning = next(g for g in report.report_data(history).genes if g.name == "dropout").warning
    assert "dropout: most of the 3 best candidates sit at the lower edge (0)" in warning


def test_no_hparam_section_when_the_run_has_none(tmp_path):
    data = report.report_data(make_run(tmp_path / "r", history_records()))
    assert data.genes == ()
    assert "plot-hparams" not in report.render_html(data)


def test_every_evaluation_is_a_row_in_the_journals_order(history):
    rows = report.report_data(history).rows()
    pairs = list(dict.fromkeys((r["id"], r["rung"]) for r in journal_lines(history.path)))  # first written, once each
    assert [(r["id"], r["rung"]) for r in rows] == pairs and len(rows) == 13
    assert list(rows[0]) == [*list(store.COLUMNS)[:-2], *store.HPARAM_COLUMNS, "key", "genome"]
    by = {(r["id"], r["rung"]): r for r in rows}
    assert not by[(9, 0)]["final"] and by[(9, 1)]["final"] and by[(9, 1)]["on_front"] and not by[(9, 0)]["on_front"]
    assert by[(6, 0)]["cache_of"] == 2 and by[(5, 0)]["status"] is Status.FAILED
    assert by[(5, 0)]["error"] == "out of memory" and by[(4, 0)]["lr"] == 0.45


def test_repeats_are_one_evaluation_with_mean_and_sd(repeated):
    data = report.report_data(repeated)
    rows = data.rows()
    assert [r["id"] for r in rows] == [0, 1, 2] and len(journal_lines(repeated.path)) == 9
    assert rows[0]["accuracy"] == pytest.approx(statistics.fmean((0.50, 0.54, 0.58)))
    assert rows[0]["accuracy_sd"] == pytest.approx(statistics.stdev((0.50, 0.54, 0.58)))
    assert rows[0]["repeats"] == 3 and rows[1]["status"] is Status.FAILED
    assert "1 of 3 trainings failed" in rows[1]["error"]
    assert data.timing.trained == 3
    assert data.timing.total == pytest.approx(sum(r["wall_time"] for r in journal_lines(repeated.path)))
    figure = figures.objective_figure(data, "macs")
    bars = [t["error_y"]["array"] for t in figure["data"] if t.get("legendgroup") == figures.EVALUATIONS]
    assert bars == [[pytest.approx(rows[0]["accuracy_sd"]), pytest.approx(rows[2]["accuracy_sd"])]]
    page = report.render_html(data)
    front = re.search(r"<table id='front'.*?</table>", page, re.S).group(0)
    assert f"{rows[2]['accuracy']:.4f} ± {rows[2]['accuracy_sd']:.4f} (3 seeds)" in front
    assert "3 seeds each (mean ± sd)" in page


def test_timing_is_from_the_wall_times_and_the_clock(history):
    data = report.report_data(history)
    times = [r["wall_time"] for r in journal_lines(history.path) if r.get("cache_of") is None]
    assert data.timing.trained == len(times) == 12
    assert data.timing.median == statistics.median(times) and data.timing.total == pytest.approx(sum(times))
    assert data.timing.span == 11  # created 00:00:00, the last line finished at 00:00:11


# -- figures ------------------------------------------------------------------------------------

def test_accuracy_axes_stay_inside_zero_and_one():
    assert figures.accuracy_range([1.0, 0.98]) == [pytest.approx(0.96), 1.02]  # not 0 to 2
    assert figures.accuracy_range([]) == figures.accuracy_range([0.0]) == [-0.02, 1.02]  # all failed: not -1 to 4
    low, high = figures.accuracy_range([0.55, 0.65])
    assert 0.5 < low < 0.55 and 0.65 < high < 0.7  # a close look where the values are
    assert figures.accuracy_range([0.55, 0.65], with_zero=True)[0] == -0.02  # room for the crosses at 0


@pytest.mark.parametrize("values, ticks", [
    ([120e3, 3.5e6], [2e5, 5e5, 1e6, 2e6]),  # 1-2-5 over a few decades
    ([10, 5e6], [10, 100, 1e3, 1e4, 1e5, 1e6]),  # powers of ten beyond
    ([1.1e6, 1.45e6], [1.1e6, 1.2e6, 1.3e6, 1.4e6, 1.5e6]),  # round steps within a digit
    ([3.1e5, 8.8e5], [3e5, 4e5, 5e5, 6e5, 7e5, 8e5, 9e5]),  # every digit within one decade
])
def test_log_axes_have_ticks_people_read(values, ticks):
    axis = figures.log_ticks(values)
    assert axis["type"] == "log" and axis["tickvals"] == [pytest.approx(t) for t in ticks]
    assert axis["ticktext"] == [rdata.si(t) for t in axis["tickvals"]]
    low, high = axis["range"]
    assert low < np.log10(min(values)) and high > np.log10(max(values))
    assert all(low <= np.log10(t) <= high for t in axis["tickvals"])


def test_generations_get_discrete_colours():
    assert [(a, b) for a, b, _ in figures.generation_groups(3)] == [(0, 0), (1, 1), (2, 2), (3, 3)]
    groups = figures.generation_groups(24)  # 25 generations: 9 groups of 3, then the last one
    assert len(groups) <= figures.MOST_COLOURS and groups[0][:2] == (0, 2) and groups[-1][1] == 24
    assert len({c for *_, c in groups}) == len(groups)


def test_figures_are_valid_plotly(history):
    import plotly.graph_objects as go

    data = report.report_data(history)
    for figure in (figures.objective_figure(data, "macs"), figures.objective_figure(data, "params"),
                   figures.objectives_3d(data), figures.progress_figure(data), figures.lineage_figure(data),
                   figures.hparam_figure(data)):
        go.Figure(figure)  # raises on any unknown property or bad value


def test_every_point_carries_its_id_and_generations_are_traces(history):
    data = report.report_data(history)
    figure = figures.objective_figure(data, "macs")
    groups = [t for t in figure["data"] if t.get("legendgroup") == figures.EVALUATIONS]
    assert [t["name"] for t in groups] == ["generation 0", "generation 1", "generation 2"]
    assert sorted(i for t in groups for i in t["customdata"]) == [e.id for e in data.evaluations if e.ok]
    assert "colorbar" not in json.dumps(figure)


def test_ancestry_arrows_point_from_parent_to_child(history):
    data = report.report_data(history)
    arrows = figures.lineage_figure(data)["layout"]["annotations"]
    nodes = {i for chain in data.lineage.values() for i in chain}
    expected = {(p, e.id) for e in (data.individuals[i] for i in nodes) for p in e.parents if p in nodes}
    where = {i: (data.individuals[i].generation, data.individuals[i].accuracy or 0.0) for i in nodes}
    drawn = set()
    for a in arrows:  # the head at (x, y), the tail at (ax, ay)
        drawn |= {(p, c) for p in nodes for c in nodes
                  if where[p] == (a["ax"], a["ay"]) and where[c] == (a["x"], a["y"])}
        assert a["showarrow"] and a["x"] >= a["ax"]  # parents are never from a later generation
    assert expected <= drawn and len(arrows) == len(expected)


def test_hover_says_who_how_and_what(history):
    data = report.report_data(history)
    hover = figures.hover(data, data.individuals[9])
    for part in ("#9", "generation 2", "cx_uniform+mut_edge", "parents #4, #8", "accuracy 0.8000",
                 "MACs 400", "params 40", "lr 0.49", "rung 2 of 2", "|"):
        assert part in hover
    failed = figures.hover(data, data.individuals[5])
    assert "failed</b>: out of memory" in failed


# -- architecture drawings -------------------------------------------------------------------------

def expected_edges(g) -> int:
    """The oracle: how many edges a drawing must have, counted from the genome."""
    if g.space == "cells":
        return sum(2 * len(c.blocks) + len(c.output_states()) for c in (g.normal, g.reduce))
    if g.space == "nb201":
        return sum(op != "none" for op in g.edges)
    return sum(len(x.inputs) for x in g.layers) + 1  # and the last layer into the classifier


def sample_genomes() -> list:
    rng = random.Random(0)
    files = [load_genome(p) for p in sorted((ROOT / "genomes").glob("*.yaml"))]
    return files + [CellSpace(blocks=b).sample_arch(rng) for b in (1, 3, 5, 7)] + \
        [LayerSpace().sample_arch(rng) for _ in range(4)] + [genome(i) for i in range(8)]


@pytest.mark.parametrize("g", sample_genomes(), ids=lambda g: f"{g.space}-{g.name or g.describe()[:20]}")
def test_a_drawing_is_svg_with_an_edge_per_connection(g):
    svg = drawing.draw(g, reductions=2)
    root = ET.fromstring(svg)  # well-formed XML
    ns = {"s": "http://www.w3.org/2000/svg"}
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and "arch" in root.get("class")
    graphs = root.findall("s:g", ns)
    assert len(graphs) == {"cells": 2, "nb201": 1, "layers": 1}[g.space]
    assert len(root.findall(".//s:g[@class='edge']", ns)) == expected_edges(g)
    width, height = float(root.get("width")), float(root.get("height"))
    for element in root.iter("{http://www.w3.org/2000/svg}rect"):  # every node inside the picture
        x, y = float(element.get("x")), float(element.get("y"))
        assert 0 <= x and x + float(element.get("width")) <= width and 0 <= y <= height


def test_cell_drawing_marks_the_unused_blocks():
    g = CellSpace().sample_arch(random.Random(11))
    cell = replace(g.normal, concat=(2,))  # only state 2 is an output: later blocks feed nothing
    g = replace(g, normal=cell)
    dead = set(range(2, len(cell.blocks) + 2)) - live_states(cell)
    graphs = drawing.cell_graphs(g)
    assert {n.key for n in graphs[0].nodes if n.kind == "dead"} == dead and dead


def test_drawings_are_dispatched_by_space_and_other_spaces_get_none():
    from tests.chain_space import ChainGenome

    assert set(drawing.DRAWERS) == {"cells", "layers", "nb201"}
    assert drawing.draw(ChainGenome(widths=(2, 4))) is None
    assert drawing.legend([ChainGenome(widths=(2,))]) is None


def test_the_legend_names_the_ops_drawn():
    darts = load_genome(ROOT / "genomes" / "darts_v2.yaml")
    key = ET.fromstring(drawing.legend([darts]))
    labels = [t.text for t in key.iter("{http://www.w3.org/2000/svg}text")]
    assert sorted(labels) == ["dil_conv_3x3", "max_pool_3x3", "sep_conv_3x3", "skip_connect"]
    svg = drawing.draw(darts)
    for op in labels:  # each edge carries its op's colour and names it
        assert drawing.op_color(op) in svg and f"<title>{op}:" in svg


def test_a_layer_stack_shows_its_stride_2_layers():
    g = load_genome(ROOT / "genomes" / "zoph_le_baseline.yaml")
    (graph,) = drawing.layer_graphs(g, reductions=2)
    assert {n.key - 1 for n in graph.nodes if n.bold} == {2, 4}  # depth 7: 7*1//3, 7*2//3
    assert drawing.layer_graphs(g)[0].nodes[3].bold is False  # without the skeleton, nothing claimed


# -- the page ------------------------------------------------------------------------------------

def test_page_is_self_contained(history):
    from plotly.offline import get_plotlyjs

    data = report.report_data(history)
    page = report.render_html(data)
    assert page.count(get_plotlyjs()[:500]) == 1  # plotly.js embedded exactly once
    assert not re.search(r"<script[^>]+src=", page)  # nothing to fetch: opens offline
    assert page.count("Plotly.newPlot") == 6
    for i in data.front:  # each front genome as a copyable genome file, and drawn
        assert f"<pre id='genome-{i}'>" in page and f"<div class='arch-box' data-id='{i}'" in page
    file_text = html.unescape(re.search(r"<pre id='genome-8'>(.*?)</pre>", page, re.S).group(1))
    assert file_text.startswith("# source: evonas run history, evaluation 8\n")
    assert loads(file_text) == data.individuals[8].genome
    for i in data.individuals:  # the hover panel's drawing of every individual
        assert f"<template id='arch-{i}'>" in page


def test_header_says_how_candidates_were_trained_how_long_and_with_what(history):
    page = report.render_html(report.report_data(history))
    header = re.search(r"<dl class='facts'>(.*?)</dl>", page, re.S).group(1)
    for part in ("1 epoch · 1,200 training / 500 validation images · C=16 · 1 cell per stage · lr 0.4 (peak, "
                 "per batch 256) · batch 64 · successive halving, 2 rungs", "median 2.0 s, mean 2.4 s (n=12)",
                 "29.0 s of training; 11.0 s from start to the last evaluation",
                 "evonas 0.1.0, torch 2.13.0+cpu, python 3.11.7", "NAS-Bench-201"):
        assert html.escape(part) in header, part
    assert f"<dt>noise</dt><dd>{html.escape(noise.UNKNOWN)}</dd>" in header  # nobody measured this proxy


def test_the_header_states_the_measured_noise_of_the_default_cpu_proxy(tmp_path):
    from evo_nas import config as configs

    default = configs.flat(configs.from_mapping({}, data_shape=((1, 28, 28), 10)))
    run = make_run(tmp_path / "default", history_records()[:3], space="cells", **{
        k: v for k, v in default.items() if k not in ("space", "objectives", "hparams", "fidelity", "sha_rungs")})
    header = re.search(r"<dl class='facts'>(.*?)</dl>", report.render_html(report.report_data(run)), re.S).group(1)
    assert "points are noise at this proxy (seed vs seed tau +0.59" in header


def test_the_title_is_the_runs_name(tmp_path):
    run = make_run(tmp_path / "folder", history_records(), name="my-search")
    page = report.render_html(report.report_data(run))
    assert "<title>evonas report: my-search</title>" in page and "<h1>evonas run my-search</h1>" in page


def test_evaluations_table_rows_are_the_journals(history):
    page = report.render_html(report.report_data(history))
    table = re.search(r"<table id='evaluations'.*?</table>", page, re.S).group(0)
    rows = re.findall(r"<tr class='(\w+)' data-status='(\w+)' data-id='(\d+)' data-rung='(\d+)'>", table)
    journal = journal_lines(history.path)
    assert [(int(i), int(r), s) for _, s, i, r in rows] == [(d["id"], d["rung"], d["status"]) for d in journal]
    assert [c for c, *_ in rows].count("cache") == 1 and "out of memory" in table and "macs over the limit" in table


def test_a_shared_plotly_js_is_referenced_not_embedded(history):
    page = report.render_html(report.report_data(history), plotly_js="shared")
    assert "<script src='plotly.min.js'></script>" in page and len(page) < 1_000_000
    with pytest.raises(ValueError):
        report.render_html(report.report_data(history), plotly_js="cdn")


# -- the files --------------------------------------------------------------------------------------

def test_write_report_writes_html_front_and_history(history):
    written = report.write_report(history.path)
    assert written == {"report": history.path / "report.html", "front": history.path / "front.csv",
                       "history": history.history_file}
    assert written["report"].stat().st_size > 3_000_000
    front = pd.read_csv(history.path / "front.csv")
    assert list(front["id"]) == [1, 9, 4, 8, 2]
    assert front.loc[front["id"] == 9, "parents"].item() == "4 8"
    assert parse_genome(json.loads(front.loc[0, "genome"])) == report.report_data(history).individuals[1].genome
    assert len(pd.read_csv(history.history_file)) == 13  # every record, both rungs of 9 and the cache hit


def test_out_writes_the_page_and_its_tables_beside_it(history, tmp_path):
    before = listing(history.path)
    out = tmp_path / "elsewhere" / "search.html"
    out.parent.mkdir()
    written = report.write_report(history.path, out)
    assert written == {"report": out, "front": out.with_name("search-front.csv"),
                       "history": out.with_name("search-history.csv")}
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert list(pd.read_csv(written["front"])["id"]) == [1, 9, 4, 8, 2]
    assert len(pd.read_csv(written["history"])) == 13
    assert listing(history.path) == before
    report.write_report(history.path, out)  # its own report: replaced without a word


def test_shared_plotly_js_is_one_copy_for_a_folder_of_reports(history, tmp_path):
    from plotly.offline import get_plotlyjs

    folder = tmp_path / "reports"
    folder.mkdir()
    first = report.write_report(history.path, folder / "a.html", plotly_js="shared")
    stamp = first["plotly.js"].stat().st_mtime_ns
    second = report.write_report(history.path, folder / "b.html", plotly_js="shared")
    assert first["plotly.js"] == second["plotly.js"] == folder / "plotly.min.js"
    assert second["plotly.js"].read_text() == get_plotlyjs() and second["plotly.js"].stat().st_mtime_ns == stamp
    assert sorted(p.name for p in folder.iterdir()) == ["a-front.csv", "a-history.csv", "a.html", "b-front.csv",
                                                        "b-history.csv", "b.html", "plotly.min.js"]
    assert (folder / "a.html").stat().st_size < 1_000_000


def _snapshot(run):
    return run.snapshot_dir / "gen-00002.json"


@pytest.mark.parametrize("target, message", [
    (lambda run, tmp: run.journal_file, "is the run's own journal file"),
    (lambda run, tmp: run.meta_file, "is the run's own meta file"),
    (lambda run, tmp: run.config_file, "is the run's own config file"),
    (lambda run, tmp: _snapshot(run), "is in the run's snapshots folder"),
    (lambda run, tmp: run.snapshot_dir / "new.html", "is in the run's snapshots folder"),
    (lambda run, tmp: run.history_file, "is the run's own history file"),
    (lambda run, tmp: run.path / "front.csv", "is the run's own front file"),
    (lambda run, tmp: tmp / "notes.html", "exists and is not an evonas report"),
    (lambda run, tmp: tmp / "mine.html", "mine-front.csv: exists and is not an evonas table"),
    (lambda run, tmp: tmp / "dir.html", "is a directory"),
    (lambda run, tmp: tmp / "lib" / "page.html", "plotly.min.js: exists and is not a copy of plotly.js"),
])
def test_out_never_replaces_a_file_evonas_did_not_write(history, tmp_path, capsys, target, message):
    """`evonas report RUN --out RUN/journal.jsonl` once replaced the journal with HTML (issue 12)."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.html").write_text("<!DOCTYPE html><html><body>my notes</body></html>")
    (other / "mine-front.csv").write_text("a,b\n1,2\n")
    (other / "dir.html").mkdir()
    (other / "lib").mkdir()
    (other / "lib" / "plotly.min.js").write_text("console.log('not plotly')")
    out = target(history, other)
    before = listing(history.path), listing(other)
    args = ["report", str(history.path), "--out", str(out)] + (["--plotly-js", "shared"] if "lib" in str(out) else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert (listing(history.path), listing(other)) == before


def test_out_replaces_its_own_reports_old_and_new(history, tmp_path):
    old = tmp_path / "old.html"  # a report from before the generator tag
    old.write_text("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>evonas report: x</title>")
    report.write_report(history.path, old)
    assert shell.GENERATOR in old.read_text()[:400]
    assert report.written_by_evonas(old, "report") and not report.written_by_evonas(history.journal_file, "report")


def test_refresh_writes_a_report_for_hundreds_of_evaluations(tmp_path):
    rng = random.Random(0)
    records = [rec(i, i // 30, rng.random(), rng.randint(10, 1200), rng.randint(1, 120),
                   parents=[rng.randrange(i)] if i >= 30 else ()) for i in range(300)]
    run = make_run(tmp_path / "r", records)
    report.refresh(run)  # its speed is measured in docs/report.md, not asserted here
    page = (run.path / "report.html").read_text()
    assert page.count("<template id='arch-") == 300 and page.count("data-rung='0'>") == 300


def test_past_a_few_hundred_only_the_front_and_its_ancestors_are_drawn_for_hover(tmp_path, monkeypatch):
    monkeypatch.setattr(report_html, "HOVER_DRAWINGS", 5)
    data = report.report_data(make_run(tmp_path / "r", history_records()))
    page = report.render_html(data)
    drawn = {int(i) for i in re.findall(r"<template id='arch-(\d+)'>", page)}
    assert drawn == {i for chain in data.lineage.values() for i in chain} and len(drawn) < len(data.individuals)
    assert "for the front and its ancestors only" in page


def test_refresh_warns_instead_of_failing_the_run(history):
    with open(history.journal_file, "a") as f:
        f.write("garbage\n")
    history.append(rec(12, 3, 0.5, 100, 10, [1]))
    with pytest.warns(UserWarning, match="report not refreshed.*line 14 is damaged"):
        report.refresh(history)


def without_plotly(code: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run Python `code` in a process where plotly cannot be imported (the GPU image has none)."""
    blocked = f"import sys; sys.modules['plotly'] = None; sys.path.insert(0, {str(ROOT)!r})\n{code}"
    done = subprocess.run([sys.executable, "-c", blocked], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.slow
def test_without_plotly_a_refresh_writes_the_tables_and_skips_the_page_with_one_warning(history):
    """A default `evonas run` on a machine without plotly once died after generation 0 (issue 21)."""
    done = without_plotly("import warnings; from evo_nas import report; from evo_nas.store import RunDir; "
                          "warnings.simplefilter('always'); report.refresh(RunDir('history'))", history.path.parent)
    assert not (history.path / "report.html").exists()
    assert len(pd.read_csv(history.history_file)) == 13 and list(pd.read_csv(history.path / "front.csv")["id"]) == [
        1, 9, 4, 8, 2]
    assert done.stderr.count("plotly is not installed") == 1 and "report.html: not written" in done.stderr


def fidelity_dir(path: Path) -> RunDir:
    """A directory as `evonas fidelity` writes it: meta.json of kind "fidelity" without a reference
    point, and each of four genomes trained with two seeds at the proxy (rung 0) and at the
    reference (rung 1), where the larger ones are the better (the proxy says the opposite)."""
    run = RunDir.create(path, {"space": "nb201", "dataset": "fashion-mnist", "device": "cpu", "repeats": 2, **PROXY},
                        {"kind": "fidelity", "seed": 0, "objectives": ["accuracy", "macs", "params"],
                         "reference_point": {}, "created": "2026-01-01T00:00:00", "versions": VERSIONS})
    for rung in (0, 1):
        for i in range(4):
            for k in range(2):
                run.append(rec(i, 0, 0.5 + (i if rung else 3 - i) / 10 + k / 100, 100 * (i + 1), 10 * (i + 1),
                               op="fidelity", rung=rung, repeat=k))
    return run


def test_a_fidelity_directory_opens_in_report_and_front(tmp_path, capsys):
    """`evonas report` and `front` once failed on it: "meta.json: no usable reference_point" (issue 20).
    They show its evaluations, each genome at its highest fidelity, without a hypervolume."""
    run = fidelity_dir(tmp_path / "fid")
    assert main(["report", str(run.path)]) == 0
    page = (run.path / "report.html").read_text()
    assert "a fidelity measurement (its own page: fidelity.html)" in page and "none: no hypervolume" in page
    assert page.count("data-rung='1'>") == 4 and len(pd.read_csv(run.history_file)) == 16
    capsys.readouterr()
    assert main(["front", str(run.path), "--json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["accuracy"]) for r in front] == [(i, pytest.approx(0.505 + i / 10)) for i in (3, 2, 1, 0)]


def test_empty_run_gets_a_report(tmp_path):
    run = make_run(tmp_path / "r", [])
    report.write_report(run.path)
    assert "The front is empty" in (run.path / "report.html").read_text()
    assert report.front_rows(run.path) == []


# -- the commands -----------------------------------------------------------------------------

def test_front_json(history):
    result = CliRunner().invoke(cli, ["front", str(history.path), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["id"] for r in rows] == [1, 9, 4, 8, 2]
    assert rows[1] | {"genome": None, "description": None} == {
        "id": 9, "name": "", "generation": 2, "operator": "cx_uniform+mut_edge", "parents": [4, 8],
        "accuracy": 0.8, "accuracy_sd": None, "repeats": None, "macs": 400, "params": 40, "genome": None,
        "description": None}
    assert parse_genome(rows[1]["genome"]) == report.report_data(history).individuals[9].genome


def test_front_table(history, repeated):
    result = CliRunner().invoke(cli, ["front", str(history.path)])
    assert result.exit_code == 0, result.output
    assert "Pareto front (5 genomes)" in result.output and "0.9000" in result.output
    result = CliRunner().invoke(cli, ["front", str(repeated.path)])
    assert "0.7200 ± 0.0265" in result.output


def test_report_command_says_what_it_wrote(history, tmp_path):
    result = CliRunner().invoke(cli, ["report", str(history.path), "--out", str(tmp_path / "r.html"),
                                      "--plotly-js", "shared"])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()] == ["report:", "front:", "history:", "plotly.js:"]
    assert str(tmp_path / "r-history.csv") in result.output


def test_front_table_prints_brackets_as_they_are(capsys):
    report.print_front([{"id": 3, "generation": 1, "accuracy": 0.5, "macs": 1200, "params": 30, "name": "",
                         "operator": "mut_op", "description": "normal [a@0+b@1] / reduce [c@0+d@1]"}])
    assert "[a@0+b@1]" in capsys.readouterr().out  # not taken for rich markup


def listing(path: Path) -> dict:
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else None for p in sorted(path.rglob("*"))}


def bad_empty(path: Path) -> None:
    for p in path.iterdir():
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def bad_format(path: Path) -> None:
    (path / "meta.json").write_text(json.dumps({"format": 0, "seed": 0}))


def bad_journal(path: Path) -> None:
    lines = (path / "journal.jsonl").read_text().splitlines(keepends=True)
    (path / "journal.jsonl").write_text("".join(lines[:3] + ['{"id": 3, "generation": 0, "sta\n'] + lines[4:]))


def bad_reference(path: Path) -> None:
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "reference_point"}))


def bad_record(path: Path) -> None:
    with open(path / "journal.jsonl", "a") as f:
        f.write(json.dumps({"id": 12, "key": "k", "status": "ok"}) + "\n")


def bad_objectives(path: Path) -> None:
    meta = json.loads((path / "meta.json").read_text())
    (path / "meta.json").write_text(json.dumps({**meta, "objectives": ["accuracy", "latency"]}))


@pytest.mark.parametrize("damage, message", [
    (bad_empty, "not an evonas run directory (missing meta.json)"),
    (bad_format, "run format 0 is not supported"),
    (bad_journal, "line 4 is damaged"),
    (bad_reference, "no usable reference_point"),
    (bad_record, "line 14: damaged record (generation must be an integer"),
    (bad_objectives, "objectives ['accuracy', 'latency'] are not names from"),
])
@pytest.mark.parametrize("command", [["report"], ["front"], ["front", "--json"]])
def test_bad_input_is_one_line_and_exit_2_and_writes_nothing(history, capsys, damage, message, command):
    damage(history.path)
    before = listing(history.path)
    code = main([command[0], str(history.path), *command[1:]])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == "" and err.count("\n") == 1 and message in err, err
    assert listing(history.path) == before


def test_report_to_an_unwritable_place_is_one_line(history, capsys):
    assert main(["report", str(history.path), "--out", str(history.path / "no" / "such" / "r.html")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# -- a real run ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_real_run(real_run):
    records = journal_lines(real_run.path)
    data = report.report_data(real_run)
    trained = {r["id"] for r in records if r.get("cache_of") is None}
    assert {e.id for e in data.evaluations} == trained
    assert [e.genome.name for e in data.from_files] == ["ResNet (NB201 cell)"]
    assert len(data.generations) == 3
    assert all(a.hypervolume <= b.hypervolume for a, b in zip(data.generations, data.generations[1:]))
    assert data.reference == tuple(float(real_run.meta()["reference_point"][o]) for o in data.objectives)
    assert data.front and [r["id"] for r in report.front_rows(real_run.path)] == list(data.front)
    report.write_report(real_run.path)
    assert len(pd.read_csv(real_run.path / "front.csv")) == len(data.front)


# -- in a real browser ---------------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--no-first-run", "--hide-scrollbars", "--mute-audio"]
needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium at /usr/bin/chromium "
                                    "(Debian package `chromium`; .ci/run installs it)")
SHOTS = ROOT / "docs" / "images"  # the README's screenshots, refreshed with EVONAS_SCREENSHOTS=1

# Every page the browser opens records its errors from the first line of its first script on.
ERRORS_JS = """window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push('error: ' + e.message); });
(function () {
  var original = console.error;
  console.error = function () {
    window.__errors.push('console.error: ' + Array.prototype.join.call(arguments, ' '));
    original.apply(console, arguments);
  };
})();"""


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
    messages are NUL-terminated JSON on file descriptors 3 and 4), so only the standard library
    is needed. One tab; `eval` runs JavaScript in it and returns the value."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 1000):
        to_chromium, self._out = os.pipe()
        self._in, from_chromium = os.pipe()

        def descriptors():  # in the child: its 3 reads our commands, its 4 writes the replies
            os.dup2(to_chromium, 3)
            os.dup2(from_chromium, 4)

        self.proc = subprocess.Popen([str(CHROMIUM), *CHROMIUM_FLAGS, "--remote-debugging-pipe",
                                      f"--user-data-dir={profile}", "about:blank"], pass_fds=(3, 4),
                                     preexec_fn=descriptors, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chromium)
        os.close(from_chromium)
        self._buffer, self._n, self.session, self.exceptions = b"", 0, None, []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for method in ("Page.enable", "Runtime.enable"):
            self.call(method)
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.call("Page.addScriptToEvaluateOnNewDocument", source=ERRORS_JS)

    def call(self, method: str, timeout: float = 120, **params) -> dict:
        self._n += 1
        message = {"id": self._n, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._message(deadline - time.monotonic())
            if reply.get("method") == "Runtime.exceptionThrown":
                self.exceptions.append(reply["params"]["exceptionDetails"].get("text", "?"))
            if reply.get("id") == self._n:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _message(self, timeout: float) -> dict:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._in], [], [], max(timeout, 0))
            chunk = os.read(self._in, 1 << 20) if ready else b""
            if not chunk:
                raise RuntimeError("Chromium did not answer" if not ready else "Chromium went away")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}: {result['exceptionDetails'].get('exception', {})}")
        return result["result"].get("value")

    def wait(self, expression: str, timeout: float = 60):
        """The value of `expression` once it is truthy (errors while a page loads count as not yet)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.eval(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {expression}")
            time.sleep(0.2)

    def open(self, url: str) -> None:
        """Load `url` and wait until every plot is drawn."""
        self.call("Page.navigate", url=url)
        self.wait(f"location.href === {json.dumps(url)} && document.readyState === 'complete' && "
                  "Array.prototype.every.call(document.querySelectorAll('.plotly-graph-div'), "
                  "function (d) { return d._fullLayout && d.querySelector('.main-svg'); })")
        time.sleep(0.5)  # plotly's transitions

    def screenshot(self, path: Path, selector: str | None = None, most: int = 1600) -> Path:
        """A PNG of the element `selector` (its top `most` pixels), or of the window."""
        params = {"format": "png"}
        if selector:
            box = self.eval(f"(function () {{ var r = document.querySelector({json.dumps(selector)})"
                            ".getBoundingClientRect(); return [r.left + scrollX, r.top + scrollY, r.width, "
                            "r.height]; })()")
            params.update(captureBeyondViewport=True, clip={"x": max(box[0] - 8, 0), "y": max(box[1] - 8, 0),
                                                             "width": box[2] + 16, "height": min(box[3], most) + 16,
                                                             "scale": 1})
        path.write_bytes(b64decode(self.call("Page.captureScreenshot", **params)["data"]))
        return path

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._in)
        os.close(self._out)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def keep_screenshot(path: Path) -> None:
    """A screenshot for a person to look at: in artifacts/, and in docs/images/ when asked."""
    assert 20_000 < path.stat().st_size < 2_000_000, path.stat().st_size
    (ROOT / "artifacts").mkdir(exist_ok=True)
    shutil.copy(path, ROOT / "artifacts" / path.name)
    if os.environ.get("EVONAS_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SHOTS / path.name)


PROBE_JS = """(function () {
  var out = {errors: window.__errors, plots: {}, ranges: {}, height: document.documentElement.scrollHeight};
  document.querySelectorAll('.js-plotly-plot').forEach(function (gd) {
    var drawn = {};
    gd.querySelectorAll('.scatterlayer .trace').forEach(function (g) {
      var trace = g.__data__[0].trace, name = trace.legendgroup === 'evaluations' ? 'evaluations' : trace.name;
      drawn[name] = (drawn[name] || 0) + g.querySelectorAll('.points path.point').length;
    });
    gd.data.filter(function (t) { return t.type === 'scatter3d'; }).forEach(function (t) {
      var name = t.legendgroup === 'evaluations' ? 'evaluations' : t.name;
      drawn[name] = (drawn[name] || 0) + t.x.length;
    });
    out.plots[gd.id] = drawn;
    var l = gd._fullLayout;
    if (l.width > gd.parentElement.getBoundingClientRect().width + 1) out.errors.push(gd.id + ' is wider than its box');
    out.ranges[gd.id] = {y: l.yaxis && l.yaxis.range, y2: l.yaxis2 && l.yaxis2.range, y3: l.yaxis3 && l.yaxis3.range,
                         z: l.scene && l.scene.zaxis.range, xticks: l.xaxis && l.xaxis.tickvals};
  });
  out.drawings = Array.prototype.map.call(document.querySelectorAll('#front .arch-box'), function (box) {
    return [Number(box.dataset.id), box.querySelectorAll('svg.arch > g.graph').length,
            box.querySelectorAll('g.edge').length];
  });
  out.rows = Array.prototype.map.call(document.querySelectorAll('#evaluations tbody tr'), function (row) {
    return [Number(row.dataset.id), Number(row.dataset.rung), row.dataset.status];
  });
  return out;
})()"""

SORT_JS = """(function () {
  var th = Array.prototype.find.call(document.querySelectorAll('#evaluations th'),
                                     function (h) { return h.textContent === 'accuracy'; });
  th.click();
  var k = th.cellIndex;
  return Array.prototype.map.call(document.querySelectorAll('#evaluations tbody tr'), function (row) {
    return row.cells[k].getAttribute('data-v');
  });
})()"""

FILTER_JS = """(function () {
  var select = document.getElementById('evaluations-status');
  select.value = %s; select.dispatchEvent(new Event('change'));
  var shown = Array.prototype.filter.call(document.querySelectorAll('#evaluations tbody tr'),
                                          function (r) { return !r.hidden; }).length;
  var text = document.getElementById('evaluations-count').textContent;
  select.value = ''; select.dispatchEvent(new Event('change'));
  return [shown, text];
})()"""

POINT_JS = """(function () {
  var gd = document.getElementById(%s);
  gd.scrollIntoView({block: 'center'});
  var trace = Array.prototype.find.call(gd.querySelectorAll('.scatterlayer .trace'),
                                        function (g) { return g.__data__[0].trace.name === %s; });
  var r = trace.querySelector('path.point').getBoundingClientRect();
  return [r.left + r.width / 2, r.top + r.height / 2, trace.__data__[0].trace.customdata[0]];
})()"""

PANEL_JS = """(function () {
  var panel = document.getElementById('arch-panel'), label = document.querySelector('#plot-macs .hoverlayer');
  if (panel.hidden || !label.textContent) return null;
  return {label: label.textContent, head: panel.querySelector('.arch-head').textContent,
          graphs: panel.querySelectorAll('svg.arch > g.graph').length};
})()"""


NAMES_JS = """(function () {
  var out = {};
  ['plot-published-macs', 'plot-published-params'].forEach(function (id) {
    var gd = document.getElementById(id), box = gd.getBoundingClientRect();
    var rect = function (e) { var r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
    out[id] = {box: rect(gd), title: rect(gd.querySelector('.gtitle')), modebar: rect(gd.querySelector('.modebar')),
               names: Array.prototype.map.call(gd.querySelectorAll('.annotation-text-g'), function (g) {
                 return rect(g).concat([g.textContent]); })};
  });
  return out;
})()"""


def check_lecture_names(browser: "Browser") -> None:
    """The published figures' titles and names as drawn: each inside its figure, none over
    another (they once read "eNet top-1 ...", "obileNet-v2", "Inception-", names on names)."""
    def inside(r, box):
        return box[0] <= r[0] and r[2] <= box[2] and box[1] <= r[1] and r[3] <= box[3]

    from evo_nas.published import PUBLISHED

    for plot, drawn in browser.eval(NAMES_JS).items():
        title, names = drawn["title"], drawn["names"]
        assert inside(title, drawn["box"]) and title[2] < drawn["modebar"][0], (plot, title)
        assert sorted(n[4] for n in names if "mobile limit" not in n[4]) == sorted(p.name for p in PUBLISHED)
        for k, a in enumerate(names):
            assert inside(a, drawn["box"]), (plot, a)
            for b in names[k + 1:]:
                assert a[2] <= b[0] + 1 or b[2] <= a[0] + 1 or a[3] <= b[1] + 1 or b[3] <= a[1] + 1, (plot, a, b)


def hover(browser: "Browser", plot: str, trace: str) -> tuple[int, dict]:
    """Move the mouse onto the first point of `trace` in `plot`, as a person would; the id of
    that point and what the hover label and the side panel then show."""
    x, y, ident = browser.eval(POINT_JS % (json.dumps(plot), json.dumps(trace)))
    for dx in (1, 0):  # a move onto the point from next to it
        browser.call("Input.dispatchMouseEvent", type="mouseMoved", x=x + dx, y=y)
    return ident, browser.wait(PANEL_JS, timeout=10)


def check_page(browser: Browser, data) -> dict:
    """What must hold on any report page, with the journal as the oracle; returns the probe."""
    probe = browser.eval(PROBE_JS)
    assert probe["errors"] == [] and browser.exceptions == []
    drawable = [e for e in data.evaluations if e.macs is not None]
    for plot in ("plot-macs", "plot-params"):
        drawn = probe["plots"][plot]
        assert drawn.get("evaluations", 0) + drawn.get("failed / infeasible (at 0)", 0) == len(drawable), drawn
        assert drawn.get(rdata.FRONT_TRACE, 0) == len(data.front)
        assert drawn.get("genomes from files", 0) == len([e for e in data.from_files if e.macs is not None])
    assert probe["plots"]["plot-3d"].get("evaluations", 0) == len([e for e in data.evaluations if e.ok])
    assert set(probe["plots"]) >= {"plot-macs", "plot-params", "plot-3d", "plot-progress", "plot-lineage"}
    for plot, axis in (("plot-macs", "y"), ("plot-params", "y"), ("plot-lineage", "y"), ("plot-progress", "y2"),
                       ("plot-3d", "z")):  # clamped: never 0 to 2, never -1 to 4
        low, high = probe["ranges"][plot][axis]
        assert -0.05 <= low < high <= 1.05, (plot, low, high)
    # The drawings of every front member, each with its edges (counted from the genome).
    graphs = {"cells": 2, "nb201": 1, "layers": 1}
    assert probe["drawings"] == [[i, graphs[data.individuals[i].genome.space],
                                  expected_edges(data.individuals[i].genome)] for i in data.front]
    # The table of every evaluation: the journal's (id, rung) pairs, in its order.
    journal = data.history.records
    pairs = list(dict.fromkeys((r.id, r.rung) for r in journal))
    assert [(i, rung) for i, rung, _ in probe["rows"]] == pairs
    finals = {(r.id, r.rung): r for r in data.history.rung_records()}
    assert [s for *_, s in probe["rows"]] == [str(finals[p].status) for p in pairs]
    return probe


def check_interaction(browser: Browser, data) -> None:
    """Sorting, filtering and hovering work as a person would use them."""
    values = browser.eval(SORT_JS)
    numbers = [float(v) for v in values if v != ""]
    assert numbers == sorted(numbers) and all(v == "" for v in values[len(numbers):])  # blanks last
    statuses = [r.status for r in data.history.rung_records()]
    status = Status.FAILED if Status.FAILED in statuses else Status.OK
    shown, text = browser.eval(FILTER_JS % json.dumps(status.value))
    assert shown == statuses.count(status) and text == f"{shown} of {len(statuses)} shown"
    ident, shown = hover(browser, "plot-macs", rdata.FRONT_TRACE)
    assert f"#{ident}" in shown["label"] and "generation" in shown["label"]
    assert shown["head"].startswith(f"#{ident}") and shown["graphs"] == len(drawing.DRAWERS[
        data.individuals[ident].genome.space](data.individuals[ident].genome))


@pytest.mark.browser
@needs_chromium
@pytest.mark.parametrize("which", ["history", "cells", "repeated", pytest.param("real_run", marks=pytest.mark.slow)])
def test_report_renders_in_chromium(which, request, tmp_path):
    run = request.getfixturevalue(which)
    data = report.report_data(run)
    page = tmp_path / "report.html"
    page.write_text(report.render_html(data))
    with Browser(tmp_path / "profile") as browser:
        browser.open(page.as_uri())
        check_page(browser, data)
        check_interaction(browser, data)
        if which == "real_run":  # the README's screenshots: a real search ...
            browser.open(page.as_uri())
            keep_screenshot(browser.screenshot(tmp_path / "report-overview.png", "body", most=1150))
            keep_screenshot(browser.screenshot(tmp_path / "report-evaluations.png", "div.evaluations", most=560))
        if which == "cells":  # ... and cells drawn beside their point (made-up accuracies)
            check_lecture_names(browser)
            keep_screenshot(browser.screenshot(tmp_path / "report-front-cells.png", "div.front", most=1300))
            hover(browser, "plot-macs", rdata.FRONT_TRACE)
            keep_screenshot(browser.screenshot(tmp_path / "report-hover.png"))


@pytest.mark.browser
@needs_chromium
def test_a_shared_plotly_js_page_renders_in_chromium(history, tmp_path):
    written = report.write_report(history.path, tmp_path / "shared.html", plotly_js="shared")
    with Browser(tmp_path / "profile") as browser:
        browser.open(written["report"].as_uri())
        check_page(browser, report.report_data(history))


def test_a_cells_run_shows_the_lectures_published_figures_and_an_nb201_run_does_not(tmp_path, history):
    from evo_nas.published import PUBLISHED

    cells = make_run(tmp_path / "cells", history_records()[:3], space="cells")
    page = report.render_html(report.report_data(cells))
    assert "The published cells on ImageNet</h2>" in page
    assert page.index("published cells") < page.index("Every evaluation")
    for div in ("plot-published-macs", "plot-published-params"):
        assert f'id="{div}"' in page
    assert all(html.escape(p.name) in page or p.name in page for p in PUBLISHED)  # every published point is there
    assert "published cells on ImageNet" not in report.render_html(report.report_data(history))  # nb201
