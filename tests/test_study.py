"""The NAS-Bench-201 study: budget and dedup bookkeeping, traces, determinism, files, CLI."""

import csv
import json
import re
import statistics

import pytest
from click.testing import CliRunner

from evo_nas import algorithms, nb201_table, study
from evo_nas.algorithms import breed
from evo_nas.errors import ConfigError
from evo_nas.search import State
from evo_nas.spaces.nb201 import OPS as NB201_OPS
from evo_nas.spaces.nb201 import NB201Genome
from evo_nas.study import StudyConfig, run_one, run_study, summary_lines, table_search
from tests.test_report import without_plotly

ALGORITHMS = ("aging", "nsga2", "random")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_search_evaluates_exactly_the_budget_of_distinct_networks(algorithm):
    run = run_one(algorithm, "cifar10", seed=3, budget=60)
    assert len(run.evaluated) == 60
    keys = {study.SPACE.key(NB201Genome.from_arch_string(nb201_table.table().archs[i])) for i in run.evaluated}
    assert len(keys) == 60  # no two evaluations of the same network, isomorphic ones included
    assert run.individuals >= 60


def test_a_population_larger_than_the_budget_is_cut_to_it():
    assert study.SETTINGS["aging"].population > 20
    assert len(run_one("aging", "cifar100", seed=0, budget=20).evaluated) == 20


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_same_seed_same_search_other_seed_other_search(algorithm):
    a = run_one(algorithm, "cifar10", seed=5, budget=40)
    assert run_one(algorithm, "cifar10", seed=5, budget=40).evaluated == a.evaluated
    assert run_one(algorithm, "cifar10", seed=6, budget=40).evaluated != a.evaluated


def test_traces_follow_the_best_by_validation():
    val = [50.0, 60.0, 55.0, 70.0]
    test = [80.0, 85.0, 99.0, 84.0]
    v, t = study.traces([0, 1, 2, 3], val, test, budget=6)
    assert v == [50.0, 60.0, 60.0, 70.0, 70.0, 70.0]  # padded with the last value
    assert t == [80.0, 85.0, 85.0, 84.0, 84.0, 84.0]  # the incumbent's test accuracy may drop


def test_evaluations_to_match_uses_the_mean_curve():
    curves = [[1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 2.0]]  # mean 1.0, 1.5, 2.0, 3.0
    assert study.evaluations_to_match(curves, 2.0) == 3
    assert study.evaluations_to_match(curves, 3.5) is None
    assert study.evaluations_to_match(curves, None) is None
    assert study.first_reaching([1.0, 2.0, 3.0], 2.0) == 2


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    cfg = StudyConfig(dataset="cifar10", algorithms=ALGORITHMS, seeds=4, budget=30, out=out)
    return cfg, run_study(cfg)


def test_study_bookkeeping_on_a_small_budget(small):
    cfg, result = small
    assert [(r["algorithm"], r["seed"]) for r in result.rows] == [(a, s) for a in ALGORITHMS for s in range(4)]
    val, test = (nb201_table.table().column("cifar10", c) for c in ("val12", "test200"))
    for row in result.rows:
        assert row["evaluations"] == 30
        assert row["val12"] == val[row["index"]] and row["test200"] == test[row["index"]]
        assert 0 < row["hypervolume"] <= result.space_hv and row["hv_gap"] >= 0
    for algorithm in ALGORITHMS:
        for v, t in zip(result.curves[algorithm]["val"], result.curves[algorithm]["test"]):
            assert len(v) == len(t) == 30
            assert all(a <= b for a, b in zip(v, v[1:]))
    # The returned network is the one holding the best validation accuracy at the end.
    for row, t in zip(result.rows, [t for a in ALGORITHMS for t in result.curves[a]["test"]]):
        assert t[-1] == row["test200"]
    randoms = [r["test200"] for r in result.rows if r["algorithm"] == "random"]
    assert result.target == pytest.approx(sum(randoms) / len(randoms))


def test_study_writes_one_csv_row_per_algorithm_and_seed_and_a_plot(small):
    cfg, result = small
    with result.files["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(ALGORITHMS) * cfg.seeds
    assert {r["algorithm"] for r in rows} == set(ALGORITHMS)
    assert result.files["html"].read_text().count("plotly") > 0


def test_summary_has_one_line_per_algorithm_starting_with_its_name(small):
    _, result = small
    lines = summary_lines(result)
    assert len(lines) == len(ALGORITHMS)
    for algorithm, line in zip(ALGORITHMS, lines):
        assert line.startswith(algorithm) and "±" in line and "hv" in line


def test_a_study_is_reproducible(tmp_path):
    cfg = StudyConfig(algorithms=("aging", "random"), seeds=3, budget=25, out=None)
    assert run_study(cfg).rows == run_study(cfg).rows


def test_without_random_search_there_is_nothing_to_match():
    result = run_study(StudyConfig(algorithms=("aging",), seeds=2, budget=20, out=None))
    assert result.target is None and "n/a" in summary_lines(result)[0]


@pytest.mark.parametrize("change", [{"dataset": "mnist"}, {"algorithms": ("hill",)}, {"space": "cells"},
                                    {"algorithms": ("aging", "aging")}, {"budget": 0}])
def test_bad_configs_are_user_errors(change):
    with pytest.raises(ConfigError):
        run_study(StudyConfig(**{"seeds": 1, "budget": 10, "out": None, **change}))


def test_a_parent_with_every_neighbour_known_still_gets_a_new_child():
    """Aging's mutation walks on from a known child instead of returning a duplicate."""
    search, _ = table_search("cifar10", study.SETTINGS["aging"], seed=0, budget=100)
    parent = search.new(NB201Genome.from_arch_string(nb201_table.table().archs[13714]), (), "init", 0)
    for i, op in ((i, op) for i in range(6) for op in NB201_OPS if op != parent.genome.edges[i]):
        search.new(NB201Genome(edges=parent.genome.edges[:i] + (op,) + parent.genome.edges[i + 1:]), (), "init", 0)
    known = set(search.archive.seen)
    child = breed(search, algorithms._mutant(search, parent), 1, [])
    assert child.key not in known
    assert sum(a != b for a, b in zip(child.genome.edges, parent.genome.edges)) >= 2


def test_cli_study(tmp_path):
    from evo_nas.cli import cli

    result = CliRunner().invoke(cli, ["study", "--table", "cifar100", "--algorithms", "aging", "--seeds", "2",
                                      "--budget", "20", "--runs-dir", str(tmp_path), "--name", "table"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["aging", "random"]  # random search joins every study
    out = tmp_path / "table"
    assert (out / "nb201-cifar100.csv").exists() and (out / "nb201-cifar100.html").exists()
    refused = CliRunner().invoke(cli, ["study", "--table", "cifar10", "--epochs", "2"])
    assert "epochs: applies to a study on real training" in str(refused.exception)


def test_state_is_what_the_algorithms_return():
    # The table search drives the real algorithms: their final state holds evaluated individuals.
    search, _ = table_search("imagenet16-120", study.SETTINGS["nsga2"], seed=1, budget=40)
    state = study.ALGORITHMS["nsga2"](search)
    assert isinstance(state, State) and all(ind.ok for ind in state.population)


def test_the_results_table_is_the_rows_summarised(small):
    _, result = small
    table = study.algorithm_table(result)
    assert [t["algorithm"] for t in table] == list(ALGORITHMS)
    for t in table:
        rows = [r for r in result.rows if r["algorithm"] == t["algorithm"]]
        tests = [r["test200"] for r in rows]
        assert t["seeds"] == 4 and t["test_mean"] == pytest.approx(sum(tests) / 4)
        assert t["test_sd"] == pytest.approx(statistics.stdev(tests))
        assert (t["test_min"], t["test_max"]) == (min(tests), max(tests))
        assert t["hv_gap"] == pytest.approx(result.space_hv - statistics.fmean(r["hypervolume"] for r in rows))
        assert t["evals_to_match"] == study.evaluations_to_match(result.curves[t["algorithm"]]["test"], result.target)
        assert t["seeds_matching"] == sum(r["evals_to_match"] is not None for r in rows)
        line = next(x for x in summary_lines(result) if x.startswith(t["algorithm"]))
        assert f"test {t['test_mean']:.2f} ± {t['test_sd']:.2f}" in line and f"hv {t['hv_mean']:.4f}" in line


def test_the_study_page_has_the_table_the_hypervolume_and_labelled_bands(small):
    _, result = small
    page = result.files["html"].read_text()
    table = re.search(r"<table id='results'>.*?</table>", page, re.S).group(0)
    assert table.count("<tr>") == 1 + len(ALGORITHMS)
    for t in study.algorithm_table(result):
        assert f"<td>{t['algorithm']}</td>" in table and f"{t['test_mean']:.2f} ± {t['test_sd']:.2f}" in table
        assert f"{t['hv_mean']:.4f} ± {t['hv_sd']:.4f}" in table
        assert json.dumps(f"{t['algorithm']}: ±1 sd over 4 seeds") in page  # the band's legend entry
    assert json.dumps(f"all 15,625 cells: {result.space_hv:.4f}") in page
    assert "Hypervolume of (validation error, params)" in page
    assert page.count("Plotly.newPlot") == 2 and "<meta name='generator' content='evonas report'>" in page


@pytest.mark.slow
def test_without_plotly_the_study_writes_its_csv_and_skips_the_page(tmp_path):
    done = without_plotly("from evo_nas import study; print(sorted(study.run_study(study.StudyConfig("
                          "algorithms=('random',), seeds=2, budget=10, out='out')).files))", tmp_path)
    assert done.stdout.split() == ["['csv']"] and not (tmp_path / "out" / "nb201-cifar10.html").exists()
    assert len((tmp_path / "out" / "nb201-cifar10.csv").read_text().splitlines()) == 3
    assert done.stderr.count("plotly is not installed") == 1
