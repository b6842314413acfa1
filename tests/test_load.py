"""`evo_nas.load(run_dir)`: a run's evaluations and front as typed pandas DataFrames (what Optuna
users know as `trials_dataframe()` and `best_trials`), checked against the journal."""

import statistics

import pandas as pd
import pytest

import evo_nas
from evo_nas import report, store
from evo_nas.errors import RunDirError
from tests.journal import journal_lines
from tests.test_report import history_records, make_run, repeated_records


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path / "history", history_records(hparams=True), hparams=True, name="my-search")


def test_history_is_one_typed_row_per_evaluation(run):
    loaded = evo_nas.load(run.path)
    df = loaded.history
    journal = journal_lines(run.path)
    assert list(zip(df["id"], df["rung"])) == list(dict.fromkeys((d["id"], d["rung"]) for d in journal))
    assert list(df.columns) == [*list(store.COLUMNS)[:-2], *store.HPARAM_COLUMNS, "key", "genome"]
    types = df.dtypes.astype(str).to_dict()
    assert {types[c] for c in ("id", "rung", "generation")} == {"int64"}
    assert {types[c] for c in ("macs", "params", "cache_of", "repeats", "repeat")} == {"Int64"}
    assert df["repeat"].isna().all()  # a row per evaluation: its trainings combined
    assert {types[c] for c in ("accuracy", "wall_time", "lr")} == {"float64"}
    assert {types[c] for c in ("operator", "error", "optimizer")} == {"string"}
    assert types["status"] == "category" and list(df["status"].cat.categories) == ["ok", "failed", "infeasible"]
    assert types["final"] == types["on_front"] == "bool" and types["finished"].startswith("datetime64")
    row = df[(df["id"] == 9) & (df["rung"] == 1)].iloc[0]
    assert row["parents"] == (4, 8) and row["accuracy"] == 0.8 and row["final"] and row["on_front"]
    failed = df[df["id"] == 5].iloc[0]
    assert failed["status"] == "failed" and failed["error"] == "out of memory"
    assert df.loc[df["id"] == 6, "cache_of"].item() == 2 and pd.isna(df.loc[df["id"] == 1, "cache_of"].item())
    assert df["genome"].iloc[1] == loaded.genome(1)


def test_history_csv_front_csv_and_load_share_one_column_table(run):
    written = report.write_report(run.path)
    lines, front = pd.read_csv(written["history"]), pd.read_csv(written["front"])
    loaded = evo_nas.load(run.path)
    assert list(lines.columns) == list(loaded.history.columns)  # one row per journal line, the same columns
    assert len(lines) == len(journal_lines(run.path)) and lines["on_front"].sum() == len(loaded.front)
    assert list(front.columns) == list(store.FRONT_COLUMNS) and set(store.FRONT_COLUMNS) <= set(store.COLUMNS)
    assert list(front["accuracy"]) == list(loaded.front["accuracy"]) and list(front["id"]) == list(loaded.front["id"])


def test_the_front_is_the_reports(run):
    loaded = evo_nas.load(run.path)
    data = report.report_data(run)
    assert list(loaded.front["id"]) == list(data.front) == [1, 9, 4, 8, 2]
    assert [r.id for r in loaded.front_records] == list(data.front)
    assert list(loaded.front["accuracy"]) == [r.accuracy for r in loaded.front_records]
    assert loaded.front["on_front"].all() and loaded.history["on_front"].sum() == len(data.front)
    assert loaded.record(9).accuracy == 0.8 and loaded.record(9).rung == 1
    with pytest.raises(KeyError, match="no individual #99"):
        loaded.record(99)
    assert loaded.name == "my-search" and loaded.objectives == ("accuracy", "macs", "params")
    assert loaded.config["lr"] == 0.4 and repr(loaded) == "<evonas run 'my-search': 13 evaluations, front of 5>"


def test_repeats_are_one_row_with_mean_and_sd(tmp_path):
    loaded = evo_nas.load(make_run(tmp_path / "r", repeated_records(), fidelity="none").path)
    df = loaded.history
    assert list(df["id"]) == [0, 1, 2] and list(df["repeats"]) == [3, 3, 3]
    assert df["accuracy_sd"].iloc[2] == pytest.approx(statistics.stdev((0.70, 0.71, 0.75)))


def test_the_readme_example(run, capsys):
    run_ = evo_nas.load(run.path)
    df = run_.history
    print(df.groupby("generation")["accuracy"].max())
    print(run_.front[["id", "accuracy", "macs", "params"]])
    out = capsys.readouterr().out
    assert "0.90" in out and "macs" in out


def test_an_empty_run_and_a_missing_one(tmp_path):
    empty = evo_nas.load(make_run(tmp_path / "empty", []).path)
    assert empty.history.empty and list(empty.history.columns) == list(store.COLUMNS)
    assert empty.front.empty and empty.front_records == ()
    with pytest.raises(RunDirError, match="no such run directory"):
        evo_nas.load(tmp_path / "nothing")
