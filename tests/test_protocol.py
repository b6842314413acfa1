"""`evonas study` on real training: a tiny study end to end, its resume after `kill -9` during a
search and during a final training (the same study.csv, timings aside), its statistics against
scipy, and the hand-designed baseline's parameter count against its formula."""

import csv
import io
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from evo_nas import baselines, stats
from evo_nas.config import Skeleton
from evo_nas.evaluate.count import count
from tests.waiting import HANG, wait_for

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--space", "nb201", "--init-channels", "4", "--depth", "1", "--train-limit", "96", "--val-limit", "64",
        "--bn-recalibration", "64", "--batch-size", "32", "--budget", "6", "--seeds", "2", "--returns", "2",
        "--final-epochs", "2", "--final-images", "256", "--test-limit", "256", "--cpu-threads", "1",
        "--preset", "cpu", "--backend", "serial", "--no-report"]
TIMINGS = ("search_seconds", "final_seconds")


def study(runs: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "evo_nas", "study", *TINY, "--runs-dir", str(runs), "--name", name],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def rows(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMINGS}
            for r in csv.DictReader(io.StringIO((path / "study.csv").read_text()))]


@pytest.fixture(scope="module")
def whole(tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("study")
    proc = study(runs, "whole")
    assert proc.wait(timeout=HANG) == 0, proc.stderr.read()
    return runs / "whole"


@pytest.mark.slow
def test_a_tiny_study_writes_every_row_and_its_page(whole):
    found = rows(whole)
    searched = [r for r in found if r["kind"] == "search"]
    assert {(r["arm"], r["seed"]) for r in searched if r["rank"] == "0"} == {
        (arm, seed) for arm in ("nsga2", "random") for seed in ("0", "1")}
    assert all(r["status"] == "ok" and 0 <= float(r["test_accuracy"]) <= 1 for r in found)
    assert [r["arm"] for r in found if r["kind"] == "baseline"] == ["hand-designed"]  # nb201: no published cells
    assert (whole / "study.html").read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in (whole / "searches").iterdir()) == [
        "nsga2-seed0", "nsga2-seed1", "random-seed0", "random-seed1"]


@pytest.mark.slow
def test_a_study_killed_during_a_search_and_a_final_training_continues_to_the_same_rows(whole, tmp_path):
    proc = study(tmp_path, "killed")
    second = tmp_path / "killed" / "searches" / "nsga2-seed1" / "journal.jsonl"
    wait_for(lambda: second.is_file() and len(second.read_text().splitlines()) >= 2, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc = study(tmp_path, "killed")  # the same command continues
    final = tmp_path / "killed" / "final" / "0002" / "genome.yaml"  # written as that training starts
    wait_for(final.is_file, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc = study(tmp_path, "killed")
    assert proc.wait(timeout=HANG) == 0, proc.stderr.read()
    assert rows(tmp_path / "killed") == rows(whole)


@pytest.mark.parametrize("seed", range(5))
def test_the_exact_wilcoxon_test_agrees_with_scipy(seed):
    rng = random.Random(seed)
    d = [rng.gauss(0.3, 1) for _ in range(rng.randrange(3, 12))]
    assert stats.wilcoxon_signed_rank(d) == pytest.approx(scipy_stats.wilcoxon(d, method="exact").pvalue, abs=1e-12)


def test_the_mean_interval_is_scipys_percentile_bootstrap_in_distribution():
    rng = random.Random(7)
    x = [rng.gauss(1.0, 0.5) for _ in range(40)]
    low, high = stats.mean_interval(x)
    ref = scipy_stats.bootstrap((x,), lambda v: sum(v) / len(v), method="percentile",
                                random_state=0).confidence_interval
    assert low < sum(x) / len(x) < high
    assert low == pytest.approx(ref.low, abs=0.05) and high == pytest.approx(ref.high, abs=0.05)


def test_the_hand_designed_baseline_has_the_parameters_of_its_formula():
    sk = Skeleton(input_shape=(1, 28, 28), classes=10, init_channels=None, depth=None)
    genome = baselines.chain(16)
    widths = [x.filters for x in genome.layers]
    assert widths == [16, 16, 32, 32, 64, 64]  # doubled at each of the two stride-2 layers
    convs = sum(9 * c_in * c_out for c_in, c_out in zip([1, *widths[:-1]], widths))
    assert count(genome, sk).params == convs + sum(2 * w for w in widths) + 64 * 10 + 10  # + BN + linear
    target = count(baselines.chain(40), sk).params
    assert baselines.hand_designed(target, lambda g: sk).layers[0].filters == 40


@pytest.mark.slow
def test_watch_serves_a_study_and_sees_a_search_grow(whole, tmp_path):
    import shutil

    from evo_nas.watch import LiveReport

    copy = tmp_path / "copy"
    shutil.copytree(whole, copy)
    live = LiveReport(copy)
    page = live.page().decode()
    assert "Does the search find better networks?" in page and "<table id='arms'>" in page
    before = live.version()
    journal = copy / "searches" / "random-seed1" / "journal.jsonl"
    journal.write_text(journal.read_text())  # rewritten: its time changes, as an append's would
    assert live.version() != before


@pytest.mark.slow
def test_a_predictor_arm_searches_with_the_predictor_and_is_compared_with_random(tmp_path):
    """`--algorithms nsga2+predictor`: an ordinary nsga2 run with `predictor` on, whose screened
    children carry their prediction into the journal (issue 23, in the real-data study)."""
    arm = [*TINY, "--algorithms", "nsga2+predictor", "--seeds", "1", "--budget", "10", "--returns", "1",
           "--no-baselines", "--runs-dir", str(tmp_path), "--name", "p"]
    out = subprocess.run([sys.executable, "-m", "evo_nas", "study", *arm], cwd=ROOT, capture_output=True, text=True,
                         timeout=HANG)
    assert out.returncode == 0, out.stderr
    searches = tmp_path / "p" / "searches"
    assert sorted(p.name for p in searches.iterdir()) == ["nsga2-predictor-seed0", "random-seed0"]
    lines = [json.loads(line) for line in (searches / "nsga2-predictor-seed0" / "journal.jsonl").open()]
    screened = [line["id"] for line in lines if "predicted" in line]  # after the first fit (5 results)
    assert screened and min(screened) >= 5 and max(screened) == 9
    assert {r["arm"] for r in rows(tmp_path / "p")} == {"nsga2+predictor", "random"}
    assert "nsga2+predictor" in out.stdout
