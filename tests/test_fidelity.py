"""`evonas fidelity`: its statistics against scipy.stats on fixed data, and a tiny measurement on
real data that resumes like a run."""

import json
import random
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from evo_nas import stats
from evo_nas.cli import main
from evo_nas.store import RunDir
from tests.fakes import without_plotly

TINY = ["--space", "nb201", "--init-channels", "4", "--depth", "1", "--train-limit", "64", "--val-limit", "64",
        "--bn-recalibration", "32", "--batch-size", "32", "--cpu-threads", "1"]
SMALL = ["--genomes", "4", "--reference-factor", "2", "--reference-val", "128"]


@pytest.mark.parametrize("seed", range(6))
def test_kendall_and_spearman_agree_with_scipy_with_ties(seed):
    rng = random.Random(seed)
    x = [rng.choice([0.1, 0.2, 0.3, rng.random()]) for _ in range(25)]
    y = [v + rng.gauss(0, 0.1) if rng.random() < 0.7 else rng.choice([0.5, 0.6]) for v in x]
    assert stats.kendall_tau(x, y) == pytest.approx(scipy_stats.kendalltau(x, y).statistic, abs=1e-12)
    assert stats.spearman_rho(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)


def test_rank_statistics_edges():
    assert stats.kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert stats.kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert stats.kendall_tau([1, 1, 1], [1, 2, 3]) != stats.kendall_tau([1, 1, 1], [1, 2, 3])  # nan: undefined
    assert stats.ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]


def test_the_bootstrap_interval_holds_the_estimate_and_shrinks_with_more_data():
    rng = random.Random(1)
    x = [rng.random() for _ in range(80)]
    y = [v + rng.gauss(0, 0.3) for v in x]
    wide = stats.tau_with_interval(x[:20], y[:20])
    narrow = stats.tau_with_interval(x, y)
    for d in (wide, narrow):
        assert d["tau_low"] <= d["tau"] <= d["tau_high"]
    assert narrow["tau_high"] - narrow["tau_low"] < wide["tau_high"] - wide["tau_low"]


def test_a_tiny_measurement_writes_its_tables_and_resumes(tmp_path, capsys):
    args = ["fidelity", *TINY, *SMALL, "--runs-dir", str(tmp_path), "--name", "fid"]
    assert main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "proxy     seed vs seed tau" in out and "validity  proxy vs reference tau" in out
    run = tmp_path / "fid"
    summary = json.loads((run / "fidelity.json").read_text())
    assert summary["usable"] == 4 and summary["repeats"] == 2
    assert summary["proxy"]["variance"]["validation_images"] == 64
    assert summary["reference"]["variance"]["validation_images"] == 128
    assert summary["settings"]["reference_train_images"] == 128
    assert set(summary["predictors"]) == {"params", "macs", "naswot", "proxy_single_seed"}
    assert (run / "fidelity.html").read_text().startswith("<!DOCTYPE html>")
    assert len((run / "fidelity.csv").read_text().splitlines()) == 5
    records = RunDir(run).history().records
    assert sorted({(r.rung, r.repeat) for r in records}) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # cut the journal as a kill would, resume, and the same numbers come out
    journal = Path(run / "journal.jsonl")
    full = journal.read_text()
    journal.write_text("".join(full.splitlines(keepends=True)[:9]))
    assert main(["resume", str(run)]) == 0
    again = json.loads((run / "fidelity.json").read_text())
    assert again["rows"] == summary["rows"] and again["validity"] == summary["validity"]


def test_without_plotly_the_json_and_csv_are_written_and_the_page_skipped(tmp_path, capsys, monkeypatch):
    """On a GPU machine without plotly, all of a measurement's figures still come out."""
    without_plotly(monkeypatch)
    args = ["fidelity", *TINY, "--genomes", "4", "--no-reference", "--runs-dir", str(tmp_path), "--name", "fid"]
    with pytest.warns(UserWarning) as said:
        assert main(args) == 0, capsys.readouterr().err
    run = tmp_path / "fid"
    assert json.loads((run / "fidelity.json").read_text())["usable"] == 4
    assert len((run / "fidelity.csv").read_text().splitlines()) == 5 and not (run / "fidelity.html").exists()
    assert [str(w.message) for w in said] == [f"{run / 'fidelity.html'}: not written, plotly is not installed "
                                              "(the data files are)"]
