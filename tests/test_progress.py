"""What a run shows as it works, off a terminal (plain lines): one line per evaluation with an
ETA from the evaluations so far, and, inside a long candidate, its steps done."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from evo_nas import progress
from evo_nas.backends import serial
from evo_nas.cli import cli
from tests.test_run import TINY

LINE = re.compile(r"gen (\d+)  evals (\d+) .*  \d+%  elapsed .+  ETA (.+)$")


@pytest.mark.slow
def test_a_line_per_evaluation_with_an_eta_from_the_first_one(tmp_path):
    result = CliRunner().invoke(cli, ["run", *TINY, "--runs-dir", str(tmp_path), "--name", "p", "--generations", "2"])
    assert result.exit_code == 0, result.output
    lines = [m for m in map(LINE.search, result.output.splitlines()) if m]
    evals = [int(m[2]) for m in lines]
    assert evals == list(range(1, 13))  # generation 0 and two more of 4: every evaluation told
    assert lines[0][3] != "-"  # an ETA from the first evaluation, not from the first generation
    assert lines[-1][3] == "0.0 s"


def test_one_progress_line_and_one_way_to_write_a_duration():
    assert progress.line(12, 48, 30.0, "proxy genome 3 seed 1: accuracy 0.8125") == \
        "proxy genome 3 seed 1: accuracy 0.8125  25%  elapsed 30.0 s  ETA 1 min 30 s"
    assert progress.line(5, 10, 8.0, "resumed", since=5).endswith("50%  elapsed 8.0 s  ETA -")  # none done here yet
    assert progress.line(6, 10, 8.0, "resumed", since=5).endswith("ETA 32.0 s")  # 1 in 8 s, 4 to go
    assert [progress.duration(s) for s in (None, 3.21, 252, 7500)] == ["-", "3.2 s", "4 min 12 s", "2 h 05 min"]


@pytest.mark.slow
def test_a_long_candidate_tells_its_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(serial, "STEPS_EVERY", 0.0)  # every step, and every line: the test must not wait
    monkeypatch.setattr(progress, "STEPS_LINE_EVERY", 0.0)
    result = CliRunner().invoke(cli, ["run", *TINY, "--population", "2", "--generations", "1", "--epochs", "2",
                                      "--runs-dir", str(tmp_path), "--name", "s"])
    assert result.exit_code == 0, result.output
    told = re.findall(r"^  training #(\d+) (\d+)/(\d+)$", result.output, re.M)
    by_candidate = {cid: [int(done) for c, done, _ in told if c == cid] for cid, _, _ in told}
    assert set(by_candidate) == {"0", "1", "2", "3"}  # generation 0 and one more of 2
    total = {int(t) for _, _, t in told}
    assert len(total) == 1 and total.pop() == 6  # 96 images at batch 32, 2 epochs
    for steps in by_candidate.values():
        assert steps == sorted(steps) and steps[0] >= 1 and steps[-1] <= 6


@pytest.mark.parametrize("steps, text", [({}, ""), ({3: (4, 10), 1: (10, 10)}, "#1 10/10, #3 4/10")])
def test_the_steps_in_flight_read_in_candidate_order(steps, text):
    assert progress._in_flight(steps) == text
