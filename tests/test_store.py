"""Run directories: refuse to overwrite, durable journal, tolerant of a torn last line; typed
records and the History that replays them."""

import json

import pytest

from evo_nas.errors import RunDirError
from evo_nas.records import History, Record, Result, Status
from evo_nas.spaces.nb201 import NB201Genome, NB201Space
from evo_nas.store import COLUMNS, RunDir, csv_text, history_frame

GENOME = NB201Genome.from_arch_string("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|nor_conv_3x3~2|")
OTHER = NB201Genome.from_arch_string("|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|nor_conv_3x3~2|")


def record(ident, genome=GENOME, rung=0, accuracy=0.5, status=Status.OK, **more):
    result = Result(status, accuracy=accuracy, macs=100 + ident, params=10) if status is Status.OK else \
        Result(status, error="out of memory")
    return Record(ident, 0, genome, NB201Space().key(genome), result, rung, **more)


def make(tmp_path, name="r"):
    return RunDir.create(tmp_path / name, {"space": "cells"}, {"seed": 1})


def test_create_refuses_an_existing_run(tmp_path):
    run = make(tmp_path)
    run.append(record(0))
    before = run.journal_file.read_bytes()
    with pytest.raises(RunDirError, match="already exists; continue it with `evonas resume"):
        make(tmp_path)
    assert run.journal_file.read_bytes() == before


def test_journal_round_trip_and_torn_last_line(tmp_path):
    run = make(tmp_path)
    for i in range(3):
        run.append(record(i, accuracy=0.5 + i / 10))
    with open(run.journal_file, "a") as f:
        f.write('{"id": 3, "key": "k3", "accu')  # killed mid-write
    with pytest.warns(UserWarning, match="truncated last line"):
        history = run.history()
    assert [r.id for r in history.records] == [0, 1, 2]
    assert [r.accuracy for r in history.records] == [0.5 + i / 10 for i in range(3)]  # the round trip
    assert run.journal_file.read_text().endswith('"accu')  # reading alone changes nothing
    with pytest.warns(UserWarning):
        run.history(repair=True)
    run.append(record(3))
    assert [r.id for r in run.history().records] == [0, 1, 2, 3]


def test_damage_in_the_middle_is_an_error(tmp_path):
    run = make(tmp_path)
    run.append(record(0))
    with open(run.journal_file, "a") as f:
        f.write("garbage\n")
    run.append(record(1))
    with pytest.raises(RunDirError, match="line 2 is damaged"):
        run.history()


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


def snapshot(generation: int) -> dict:
    state = [3, [0] * 625, None]
    return {"generation": generation, "next_id": 4 * generation + 4, "population": [0, 1], "rng": state,
            "python_rng": state}


def test_snapshots_fall_back_to_the_previous_one(tmp_path):
    run = make(tmp_path)
    for g in range(5):
        run.save_snapshot(g, snapshot(g))
    assert len(list(run.snapshot_dir.glob("gen-*.json"))) == 3
    assert run.snapshots()[0]["generation"] == 4
    (run.snapshot_dir / "gen-00004.json").write_text('{"generation": 4, "po')
    with pytest.warns(UserWarning, match="damaged snapshot"):
        assert run.snapshots()[0]["generation"] == 3


def test_history_is_sorted_by_id_and_rung():
    frame = history_frame(History([record(2, parents=(0, 1)), record(0, OTHER), record(2, rung=1)]), ["accuracy"])
    assert list(zip(frame["id"], frame["rung"])) == [(0, 0), (2, 0), (2, 1)]
    assert list(frame["final"]) == [True, False, True] and list(frame["on_front"]) == [True, False, True]
    lines = csv_text(frame).splitlines()
    assert [line.split(",")[list(COLUMNS).index("parents")] for line in lines[1:]] == ["", "0 1", ""]


def test_a_record_round_trips_through_its_journal_line():
    original = record(3, parents=(1, 2), operator="mut_edge", finished="2026-12-02T10:00:00")
    line = json.loads(json.dumps(original.to_json()))
    assert Record.from_json(line, "here") == original
    assert "cache_of" not in line and "error" not in line and line["status"] == "ok"
    hit = record(4, cache_of=3)
    assert Record.from_json(hit.to_json(), "here").cache_of == 3 and not hit.trained


@pytest.mark.parametrize("change, words", [
    ({"id": "3"}, "id must be an integer"),
    ({"status": "done"}, "'done' is not a valid Status"),
    ({"accuracy": None}, "without accuracy, macs and params"),
    ({"genome": {"space": "nb201", "arch": "|x~0|"}}, "arch"),
    ({"parents": "1 2"}, "parents must be a list"),
])
def test_a_damaged_record_names_itself(change, words):
    line = {**record(3).to_json(), **change}
    with pytest.raises(RunDirError, match=f"^journal: line 4: damaged record .*{words}"):
        Record.from_json(line, "journal: line 4")


def test_history_answers_final_by_key_trained_and_front():
    history = History([record(0, accuracy=0.5), record(1, OTHER, accuracy=0.6), record(0, rung=1, accuracy=0.7),
                       record(2, cache_of=0), record(3, OTHER, status=Status.FAILED)])
    assert history.final(0).rung == 1 and history.final(0).accuracy == 0.7
    assert history.by_key(NB201Space().key(GENOME)).id == 0 and history.by_key(NB201Space().key(OTHER)).id == 1
    assert [r.id for r in history.evaluations()] == [0, 1, 3]
    assert history.trained() == 3 and history.cache_hits() == 1  # rung 1 and the cache hit are free
    assert [r.id for r in history.front(("accuracy",))] == [0]
    assert [r.id for r in history.front(("accuracy", "macs"))] == [0]


def test_the_run_directory_reads_the_journal_as_typed_records(tmp_path):
    run = make(tmp_path)
    run.append(record(0))
    run.append(record(1, OTHER, status=Status.FAILED))
    history = run.history()
    assert [r.status for r in history.records] == [Status.OK, Status.FAILED]
    with open(run.journal_file, "a") as f:
        f.write(json.dumps({**record(2).to_json(), "macs": "many"}) + "\n")
    with pytest.raises(RunDirError, match="line 3: damaged record"):
        run.history()
