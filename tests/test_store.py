"""Run directories: refuse to overwrite, durable journal, tolerant of a torn last line."""

import json

import pytest

from evo_nas.errors import RunDirError
from evo_nas.store import RunDir, history_frame


def make(tmp_path, name="r"):
    return RunDir.create(tmp_path / name, {"space": "cells"}, {"seed": 1})


def test_create_refuses_an_existing_run(tmp_path):
    run = make(tmp_path)
    run.append({"id": 0, "key": "k"})
    before = run.journal_file.read_bytes()
    with pytest.raises(RunDirError, match="already exists; continue it with `evonas resume"):
        make(tmp_path)
    assert run.journal_file.read_bytes() == before


def test_journal_round_trip_and_torn_last_line(tmp_path):
    run = make(tmp_path)
    for i in range(3):
        run.append({"id": i, "key": f"k{i}", "accuracy": 0.5 + i / 10})
    with open(run.journal_file, "a") as f:
        f.write('{"id": 3, "key": "k3", "accu')  # killed mid-write
    with pytest.warns(UserWarning, match="truncated last line"):
        records = run.journal()
    assert [r["id"] for r in records] == [0, 1, 2]
    assert run.journal_file.read_text().endswith('"accu')  # reading alone changes nothing
    with pytest.warns(UserWarning):
        run.journal(repair=True)
    run.append({"id": 3, "key": "k3"})
    assert [r["id"] for r in run.journal()] == [0, 1, 2, 3]


def test_damage_in_the_middle_is_an_error(tmp_path):
    run = make(tmp_path)
    run.append({"id": 0, "key": "a"})
    with open(run.journal_file, "a") as f:
        f.write("garbage\n")
    run.append({"id": 1, "key": "b"})
    with pytest.raises(RunDirError, match="line 2 is damaged"):
        run.journal()


def test_open_checks_the_format(tmp_path):
    with pytest.raises(RunDirError, match="no such run directory"):
        RunDir.open(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="not an evonas run directory"):
        RunDir.open(tmp_path / "empty")
    run = make(tmp_path)
    run.meta_file.write_text(json.dumps({"format": 0}))
    with pytest.raises(RunDirError, match="format 0 is not supported"):
        RunDir.open(run.path)


def test_snapshots_fall_back_to_the_previous_one(tmp_path):
    run = make(tmp_path)
    for g in range(5):
        run.save_snapshot(g, {"generation": g})
    assert len(list(run.snapshot_dir.glob("gen-*.json"))) == 3
    assert run.latest_snapshot()["generation"] == 4
    (run.snapshot_dir / "gen-00004.json").write_text('{"generation": 4, "po')
    with pytest.warns(UserWarning, match="damaged snapshot"):
        assert run.latest_snapshot()["generation"] == 3


def test_history_is_sorted_by_id_and_rung():
    frame = history_frame([{"id": 2, "rung": 0, "key": "c", "parents": [0, 1]}, {"id": 0, "key": "a"},
                           {"id": 2, "rung": 1, "key": "c"}])
    assert list(zip(frame["id"], frame["rung"].fillna(0))) == [(0, 0), (2, 0), (2, 1)]
    assert frame["parents"].tolist() == ["", "0 1", ""]
