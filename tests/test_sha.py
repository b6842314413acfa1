"""Successive halving inside a generation: rung records, who continues, resume mid-rung."""

import json

import pytest

from evo_nas import config as configs
from evo_nas import pareto
from evo_nas.cli import main
from evo_nas.records import Result
from tests.journal import without_timings

pytestmark = pytest.mark.slow  # every test here trains networks or starts processes

TINY = ["--space", "nb201", "--init-channels", "4", "--depth", "1", "--train-limit", "128", "--val-limit", "64",
        "--bn-recalibration", "64", "--batch-size", "16", "--population", "4", "--no-report",
        "--fidelity", "sha", "--sha-rungs", "2", "--epochs", "1"]


def test_rungs_halve_and_the_better_half_trains_longer(tmp_path):
    assert main(["run", *TINY, "--runs-dir", str(tmp_path), "--name", "sha", "--generations", "1"]) == 0
    journal = without_timings(tmp_path / "sha")
    for generation in (0, 1):
        batch = [r for r in journal if r["generation"] == generation]
        rung0 = [r for r in batch if r["rung"] == 0]
        rung1 = [r for r in batch if r["rung"] == 1]
        assert len(rung0) == 4 and len(rung1) == 2
        assert all(r["epochs"] == 0.5 for r in rung0) and all(r["epochs"] == 1.0 for r in rung1)
        # The ones that continued are the better half of rung 0 by Pareto rank, then crowding.
        ok = [r for r in rung0 if r["status"] == "ok"]
        objectives = configs.SearchConfig().objectives
        keep = pareto.select_nsga2([pareto.vector(Result.from_json(r), objectives) for r in ok], 2)
        assert {ok[i]["id"] for i in keep} == {r["id"] for r in rung1}
    assert sum(1 for r in journal if r["rung"] == 0) == 8  # the budget counts candidates, not rungs


def test_resume_in_the_middle_of_a_rung(tmp_path):
    assert main(["run", *TINY, "--runs-dir", str(tmp_path), "--name", "full", "--generations", "1"]) == 0
    assert main(["run", *TINY, "--runs-dir", str(tmp_path), "--name", "cut", "--generations", "1"]) == 0
    # Cut the second generation after two of its rung-0 evaluations: as if killed there.
    path = tmp_path / "cut" / "journal.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    first = [json.loads(line)["generation"] for line in lines].index(1)
    path.write_text("".join(lines[:first + 2]))
    for snapshot in (tmp_path / "cut" / "snapshots").glob("gen-00001.json"):
        snapshot.unlink()
    assert main(["resume", str(tmp_path / "cut")]) == 0
    assert without_timings(tmp_path / "cut") == without_timings(tmp_path / "full")
