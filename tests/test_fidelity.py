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
from tests.test_report import without_plotly

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


@pytest.mark.slow
def test_the_bootstrap_interval_holds_the_estimate_and_shrinks_with_more_data():
    rng = random.Random(1)
    x = [rng.random() for _ in range(80)]
    y = [v + rng.gauss(0, 0.3) for v in x]
    wide = stats.tau_with_interval(x[:20], y[:20])
    narrow = stats.tau_with_interval(x, y)
    for d in (wide, narrow):
        assert d.tau_low <= d.tau <= d.tau_high
    assert narrow.tau_high - narrow.tau_low < wide.tau_high - wide.tau_low


@pytest.mark.slow
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
    history = RunDir(run).history()
    records = history.records + history.others
    assert sorted({(r.rung, r.repeat, r.fidelity or "") for r in records}) == [
        (0, 0, ""), (0, 0, "reference"), (0, 1, ""), (0, 1, "reference")]
    # cut the journal as a kill would, resume, and the same numbers come out
    journal = Path(run / "journal.jsonl")
    full = journal.read_text()
    journal.write_text("".join(full.splitlines(keepends=True)[:9]))
    assert main(["resume", str(run)]) == 0
    again = json.loads((run / "fidelity.json").read_text())
    assert again["rows"] == summary["rows"] and again["validity"] == summary["validity"]
    assert main(["report", str(run)]) == 0 and main(["front", str(run)]) == 0  # as any run directory


def test_without_plotly_fidelity_writes_its_tables_and_skips_the_page(tmp_path):
    """fidelity.write once imported plotly first, so a GPU machine without it lost every table (issue 21)."""
    rows = [{"id": i, "genome": f"g{i}", "params": 10 * i, "macs": 100 * i, "naswot": 1.0 + i, "proxy": [0.5, 0.6],
             "proxy_mean": 0.55, "reference": [0.7, 0.8], "reference_mean": 0.75} for i in range(4)]
    summary = {"genomes": 4, "usable": 4, "repeats": 2, "failed": 0, "proxy": {"evaluation_seconds": None},
               "reference": {"evaluation_seconds": None}, "rows": rows, "settings": {}}
    run = RunDir.create(tmp_path / "fid", {}, {"kind": "fidelity"})
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    done = without_plotly("import json; from evo_nas import fidelity; from evo_nas.store import RunDir; "
                          "m = fidelity.Measurement.from_json(json.load(open('summary.json'))); "
                          "print(fidelity.write(RunDir('fid'), m))", tmp_path)
    assert json.loads((run.path / "fidelity.json").read_text()) == summary
    assert len((run.path / "fidelity.csv").read_text().splitlines()) == 5
    assert not (run.path / "fidelity.html").exists() and "fidelity.html" not in done.stdout
    assert done.stderr.count("plotly is not installed") == 1
