"""The performance predictor (`--predictor`): synflow against an oracle and a published property,
the shipped NB201 scores against a recomputed sample, features as a function of the genome, the
fitted model as a function of the journal, screening, the fallback, resume equivalence."""

import copy
import dataclasses
import json
import math
import random
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from evo_nas import nb201_table, predictor, runner, study
from evo_nas.algorithms import ALGORITHMS, _best_or_random
from evo_nas.cli import main
from evo_nas.config import SearchConfig, StopConfig
from evo_nas.errors import ConfigError
from evo_nas.evaluate.zero_cost import initialised, measurer, synflow
from evo_nas.predictor import Measures, Predictor, features, ranks_badly
from evo_nas.progress import predictor_line
from evo_nas.records import Record, Result, Status
from evo_nas.search import Archive, Search, Termination, lookup_evaluator
from evo_nas.spaces.layers import LayerSpace
from evo_nas.spaces.nb201 import NB201Genome, NB201Space
from evo_nas.stats import spearman_rho
from evo_nas.store import RunDir
from tests.journal import without_timings
from tests.test_algorithms import toy_objectives

# NB201 cells at C=4, one cell per stage, 96 training images (as test_run.py's), population 6 so
# that the first fit has its MIN_EVALUATIONS.
TINY = ["--space", "nb201", "--init-channels", "4", "--depth", "1", "--train-limit", "96", "--val-limit", "64",
        "--bn-recalibration", "64", "--batch-size", "32", "--population", "6", "--no-report", "--cpu-threads", "1",
        "--predictor"]


# -- synflow --------------------------------------------------------------------------------------

def test_synflow_matches_a_numpy_oracle_on_a_linear_chain():
    """R = 1' |W3| relu(|W2| relu(|W1| 1)); with every weight and the input positive the ReLUs
    pass everything, so dR/dW_l = (|W_l+1|' ... |W_L|' 1)(|W_l-1| ... |W_1| 1)', in numpy."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 7, bias=False), nn.ReLU(), nn.Linear(7, 5, bias=False),
                        nn.ReLU(), nn.Linear(5, 3, bias=False))
    before = [p.detach().clone() for p in net.parameters()]
    w = [np.abs(m.weight.detach().double().numpy()) for m in net if isinstance(m, nn.Linear)]
    x = [np.ones(12)]
    for m in w:
        x.append(m @ x[-1])  # activations, layer by layer
    g = [np.ones(3)]
    for m in reversed(w[1:]):
        g.insert(0, m.T @ g[0])  # dR/d(output of layer l)
    oracle = sum((m * np.outer(gl, xl)).sum() for m, gl, xl in zip(w, g, x))
    assert synflow(net, (3, 2, 2)) == pytest.approx(oracle, rel=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # signs and values kept


def test_synflow_conserves_flow_layer_by_layer():
    """Tanaka et al.'s Theorem 2: in a chain of homogeneous layers without biases, every layer's
    synaptic saliencies sum to the same R (the output's sum), so synflow = layers x R. BatchNorm at
    initialisation, in eval mode, is linear without bias and keeps this."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Conv2d(4, 6, 3, stride=2, bias=False), nn.ReLU(), nn.Flatten(),
                        nn.Linear(6 * 3 * 3, 5, bias=False))  # 8x8 -> 3x3
    twin = copy.deepcopy(net).double().eval()
    with torch.no_grad():
        for p in twin.parameters():
            p.abs_()
        total = twin(torch.ones(1, 3, 8, 8, dtype=torch.float64)).sum().item()  # R
    assert synflow(net, (3, 8, 8)) == pytest.approx(3 * total, rel=1e-10)


def test_shipped_scores_match_a_recomputed_sample():
    """tools/build_nb201_scores.py's table against cells rebuilt here, on every data set."""
    picks = random.Random(23).sample(range(nb201_table.CELLS), 3) + [0]
    archs = nb201_table.table().archs
    for dataset in nb201_table.DATASETS:
        skeleton, shipped = nb201_table.skeleton(dataset), nb201_table.synflow(dataset)
        for i in picks:
            genome = NB201Genome.from_arch_string(archs[i])
            assert synflow(initialised(genome, skeleton), skeleton.input_shape) == pytest.approx(shipped[i], rel=2e-6)


def test_shipped_synflow_ranks_the_benchmark_as_published():
    """Abdelfattah et al. 2021 (Table 1): synflow's Spearman rho with the final CIFAR-10 accuracy of
    all NAS-Bench-201 cells is 0.74 (0.76 on CIFAR-100, 0.75 on ImageNet16-120). Ours, over
    the whole table with its 200-epoch test accuracies, must be close."""
    for dataset in nb201_table.DATASETS:
        rho = spearman_rho(nb201_table.synflow(dataset), nb201_table.table().column(dataset, "test200"))
        assert 0.70 <= rho <= 0.82, (dataset, rho)


# -- features -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_cfg():
    return runner.plan({"space": "nb201", "init_channels": 4, "depth": 1, "train_limit": 96, "val_limit": 64,
                        "cpu_threads": 1, "generations": 1, "predictor": True})


def test_features_are_a_function_of_the_genome(tiny_cfg):
    measure, space = measurer(tiny_cfg), tiny_cfg.space.make(tiny_cfg.skeleton)
    genome = NB201Genome.from_arch_string("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|"
                                          "none~1|nor_conv_3x3~2|")
    first = measure(genome)
    torch.manual_seed(99)
    state = torch.get_rng_state()
    again = measure(genome)
    assert torch.equal(state, torch.get_rng_state())  # the process's RNG is not touched
    assert again == first and features(space, genome, again) == features(space, genome, first)
    assert [name for name, _ in first.scores] == ["synflow", "naswot"] and first.params > 0 and first.macs > 0
    other = NB201Genome(edges=("nor_conv_1x1",) * 6)
    assert features(space, other, measure(other)) != features(space, genome, first)


def test_features_pad_variable_length_encodings():
    space = LayerSpace()
    rng = random.Random(0)
    lengths = {len(features(space, space.sample(rng), Measures(10, 20))) for _ in range(20)}
    assert len(lengths) == 1  # every genome, whatever its depth, gives the model as many columns
    assert features(NB201Space(), NB201Genome(edges=("none",) * 6), Measures(1, 1, (("synflow", 0.0),
                                                                                   ("naswot", -math.inf)))) \
        == [0.0] * 6 + [0.0, 0.0, 0.0, predictor.MISSING]


# -- the model and screening on a cheap problem ------------------------------------------------

def toy_measure(genome: NB201Genome) -> Measures:
    r = toy_objectives(genome)
    return Measures(int(r.params), int(r.macs))


def predicted_search(algorithm: str, seed: int, budget: int, result_of=None, **more) -> Search:
    settings = SearchConfig(algorithm, population=8, offspring=4, sample=4, objectives=("accuracy", "params"),
                            predictor=True, **more)
    space = NB201Space()
    archive = Archive(space)
    search = Search(space, settings, random.Random(seed), archive,
                    lookup_evaluator(archive, result_of or (lambda ind: toy_objectives(ind.genome))),
                    Termination.of(StopConfig(budget=budget), settings))
    search.predictor = Predictor(space, seed, toy_measure)
    return search


@pytest.mark.parametrize("algorithm", ["aging", "nsga2"])
def test_screening_trains_the_chosen_with_dense_ids_and_their_predictions(algorithm):
    search = predicted_search(algorithm, 3, 40)
    ALGORITHMS[algorithm](search)
    born = search.archive.evaluations
    assert [ind.id for ind in born] == list(range(40)) and search.archive.next_id == 40
    assert all(ind.predicted is None for ind in born if ind.generation == 0)  # nothing to fit yet
    screened = [ind for ind in born if ind.generation > 0]
    assert screened and all(ind.predicted is not None and ind.screen_s >= 0 for ind in screened)
    assert all(sum(1 for i in screened if i.generation == g) == 4 for g in {i.generation for i in screened})
    # A learnable problem: the screened children are better than the first population.
    first = [ind.result.accuracy for ind in born if ind.generation == 0]
    assert sum(ind.result.accuracy for ind in screened) / len(screened) > sum(first) / len(first)


def test_the_fitted_model_is_a_function_of_the_evaluations_and_the_generation():
    search = predicted_search("nsga2", 5, 24)
    ALGORITHMS["nsga2"](search)
    evaluations = search.archive.evaluations
    pool = [NB201Space().sample(random.Random(k)) for k in range(30)]
    fresh = Predictor(NB201Space(), 5, toy_measure)  # as after a resume: nothing but the evaluations
    a = search.predictor.model(evaluations, 4).predict(pool)
    assert fresh.model(list(evaluations), 4).predict(pool) == a
    assert Predictor(NB201Space(), 5, toy_measure).model(evaluations, 5).predict(pool) != a  # its own random_state


def test_aging_screens_by_prediction_with_a_share_at_random():
    results = [Result(Status.OK, accuracy=a, macs=1, params=1) for a in (0.1, 0.9, 0.5, 0.7, 0.3)]
    assert _best_or_random(results, 3, random.Random(0), 0.0) == [1, 3, 2]
    over = Result(Status.INFEASIBLE, accuracy=0.99, macs=1, params=1)
    assert _best_or_random(results + [over], 1, random.Random(0), 0.0) == [1]  # over a limit: last
    drawn = {tuple(_best_or_random(results, 2, random.Random(s), 1.0)) for s in range(20)}
    assert len(drawn) > 5  # all at random


def test_a_predictor_needs_an_algorithm_with_children():
    with pytest.raises(ConfigError, match="predictor"):
        SearchConfig("random", predictor=True)
    with pytest.raises(ConfigError, match="predictor_ratio"):
        SearchConfig("aging", predictor=True, predictor_ratio=0.5)


# -- the fallback ------------------------------------------------------------------------------------

def test_ranks_badly_judges_the_latest_generations_within_each(monkeypatch):
    monkeypatch.setattr(predictor, "FALLBACK_GENERATIONS", 4)
    monkeypatch.setattr(predictor, "FALLBACK_CHILDREN", 20)  # four generations of five
    good = {g: [(0.1, 0.2), (0.2, 0.3), (0.3, 0.1), (0.4, 0.5), (0.5, 0.6)] for g in range(1, 5)}
    assert ranks_badly(good) is None
    bad = {**good, **{g: [(0.1, 0.5), (0.2, 0.4), (0.3, 0.3), (0.4, 0.2), (0.5, 0.1)] for g in range(5, 9)}}
    assert ranks_badly(bad)[:2] == (5, 8) and ranks_badly(bad)[2] == -1.0
    assert ranks_badly({g: p for g, p in bad.items() if g < 6}) is None  # one bad generation of four: not yet
    # Later generations both predicted and measured higher, each ranked backwards: pooled, the
    # tau would be positive; within each generation it is -1.
    trend = {g: [(g + 0.1, g + 0.2), (g + 0.2, g + 0.1)] * 3 for g in range(1, 5)}
    assert ranks_badly(trend) is not None
    assert ranks_badly({g: [(0.5, 0.5)] for g in range(1, 30)}) is None  # one child a generation: nothing to judge
    few = {g: p[:3] for g, p in bad.items()}
    assert ranks_badly(few)[:2] == (2, 8)  # as many generations back as it takes to hold 20 children


def test_a_predictor_that_ranks_badly_is_dropped_and_said_once():
    """Accuracies that are noise: no model can rank them, so after a few generations the run
    says so in one warning and breeds without screening; the same from the evaluations alone."""
    def noise(ind):
        r = toy_objectives(ind.genome)
        return dataclasses.replace(r, accuracy=random.Random(f"noise:{ind.id}").random())

    with pytest.warns(UserWarning, match="ranked no better than chance") as caught:
        search = predicted_search("aging", 1, 120, result_of=noise)
        ALGORITHMS["aging"](search)
    assert len([w for w in caught if "ranked no better" in str(w.message)]) == 1
    off = search.predictor.fell_back
    born = search.archive.evaluations
    assert off is not None and all(ind.predicted is None for ind in born if ind.generation >= off)
    assert any(ind.predicted is not None for ind in born if ind.generation < off)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert Predictor(NB201Space(), 1, toy_measure).model(born, off) is None  # a resume decides the same


# -- whole runs --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predicted_run(tmp_path_factory):
    """An uninterrupted NSGA-II run with the predictor: 6 + 3 x 6 evaluations."""
    runs = tmp_path_factory.mktemp("runs")
    assert main(["run", *TINY, "--runs-dir", str(runs), "--name", "full", "--generations", "3"]) == 0
    return runs / "full"


@pytest.mark.slow
def test_a_run_journals_its_predictions_and_they_follow_from_the_journal(predicted_run):
    history = RunDir.open(predicted_run).history()
    records = history.finals()
    assert all(r.predicted is None for r in records if r.generation == 0)
    assert all(r.predicted is not None and r.screen_s is not None for r in records if r.generation > 0)
    cfg = runner.plan(RunDir.open(predicted_run).config())
    model = Predictor(cfg.space.make(cfg.skeleton), cfg.seed, measurer(cfg))
    for g in (1, 3):
        trained = [runner.individual(r) for r in history.evaluations() if r.generation < g]
        children = [r for r in records if r.generation == g]
        assert model.model(trained, g).predict([r.genome for r in children]) == [r.predicted for r in children]
    line = predictor_line(history, 2)
    assert line.startswith("gen 2  predictor: Kendall tau") and "per child bred" in line


@pytest.mark.slow
def test_stop_and_resume_with_the_predictor_equals_uninterrupted(predicted_run, tmp_path):
    assert main(["run", *TINY, "--runs-dir", str(tmp_path), "--name", "part", "--generations", "1"]) == 0
    assert main(["resume", str(tmp_path / "part"), "--generations", "3"]) == 0
    assert without_timings(tmp_path / "part") == without_timings(predicted_run)


@pytest.mark.slow
def test_the_report_plots_the_predictors_tau_per_generation(predicted_run):
    from evo_nas.report.data import predictor_generations, report_data
    from evo_nas.report.figures import predictor_figure
    from evo_nas.report.html import render_html

    data = report_data(predicted_run)
    generations = predictor_generations(data.history)
    assert [g.generation for g in generations] == [1, 2, 3]
    assert all(g.children >= 2 and -1 <= g.tau <= 1 and g.screen_s > 0 and g.train_s > 0 for g in generations)
    figure = predictor_figure(generations)
    assert figure["data"][0]["x"] == [1, 2, 3] and figure["data"][0]["y"] == [g.tau for g in generations]
    assert "plot-predictor" in render_html(data, plotly_js="shared")


def test_records_carry_predictions_only_when_there_are_some():
    genome = NB201Genome(edges=("skip_connect",) * 6)
    plain = Record(0, 0, genome, "k", Result(Status.OK, accuracy=0.5, macs=1, params=1))
    assert "predicted" not in plain.to_json() and "screen_s" not in plain.to_json()
    screened = dataclasses.replace(plain, predicted=0.61, screen_s=0.002)
    back = Record.from_json(json.loads(json.dumps(screened.to_json())), "line 1")
    assert back == screened and back.predicted == 0.61 and back.extra == {}


# -- the NB201 study's arms --------------------------------------------------------------------------

def test_study_settings_keep_their_share_of_a_small_budget():
    aging = study.SETTINGS["aging"]
    assert study.for_budget(aging, 150) == aging
    assert (study.for_budget(aging, 50).population, study.for_budget(aging, 50).sample) == (16, 8)
    assert study.for_budget(aging, 3).population == 3  # the initial population fits the budget


@pytest.mark.parametrize("arm", ["aging+predictor", "nsga2+predictor"])
def test_a_predictor_arm_evaluates_exactly_its_budget_and_screens(arm):
    run = study.run_one(arm, "cifar100", seed=3, budget=60)
    assert len(run.evaluated) == 60 and len(set(run.evaluated)) == 60
    search, _ = study.table_search("cifar100", study.for_budget(study.SETTINGS[arm], 60), 3, 60)
    ALGORITHMS[study.SETTINGS[arm].algorithm](search)
    assert any(ind.predicted is not None for ind in search.archive.evaluations)


def test_the_paired_comparison_is_over_the_same_seeds():
    result = study.run_study(study.StudyConfig(algorithms=("aging", "aging+predictor"), seeds=5, budget=30, out=None))
    (row,) = study.paired_table(result)
    by = {(r["algorithm"], r["seed"]): r["test200"] for r in result.rows}
    diffs = [by[("aging+predictor", s)] - by[("aging", s)] for s in range(5)]
    assert (row["arm"], row["base"], row["seeds"]) == ("aging+predictor", "aging", 5)
    assert row["test200_diff"] == pytest.approx(sum(diffs) / 5) and 0 <= row["test200_p"] <= 1
    assert study.summary_lines(result)[-1].startswith("aging+predictor - aging, paired over 5 seeds: test")


def test_a_run_from_before_the_predictor_settings_still_resumes():
    from evo_nas import config as configs

    cfg = runner.plan({"space": "nb201", "init_channels": 4, "depth": 1, "generations": 1, "cpu_threads": 1})
    before = {k: v for k, v in configs.results_part(cfg).items() if not k.startswith("predictor")}
    assert configs.resume_changes(before, cfg) == []
    on = runner.plan({"space": "nb201", "init_channels": 4, "depth": 1, "generations": 1, "cpu_threads": 1,
                      "predictor": True})
    assert configs.resume_changes(before, on) == ["predictor"]
