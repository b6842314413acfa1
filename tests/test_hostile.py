"""Hostile input, as a table: what a user does, the one line evonas must answer (exit 2), and
that nothing already written changed. Then the run-directory cases that need a process of
their own: the lock, a kill while a run directory is made, SIGTERM, a read-only run."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evo_nas.cli import main
from evo_nas.store import RunDir
from tests.waiting import HANG, wait_for_lines

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--space", "nb201", "--init-channels", "4", "--depth", "1", "--train-limit", "96", "--val-limit", "64",
        "--bn-recalibration", "64", "--batch-size", "32", "--population", "4", "--no-report"]


def evonas(*args, env=None, timeout=HANG, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evo_nas", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "EVONAS_NO_DOWNLOAD": "1", **(env or {})}, timeout=timeout,
                          **options)


def files(path: Path) -> dict:
    """Every file's bytes, but the lock's (it names whoever held the run last)."""
    return {p: p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file() and p.name != ".lock"}


def lines(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(x).items() if k not in ("wall_time", "images_per_s", "finished")}
            for x in (run / "journal.jsonl").read_text().splitlines()]


def tiny_run(tmp_path_factory, name: str, generations: int) -> Path:
    runs = tmp_path_factory.mktemp(name)
    done = evonas("run", *TINY, "--runs-dir", runs, "--name", name, "--generations", str(generations))
    assert done.returncode == 0, done.stderr
    return runs / name


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished run of 3 generations (16 evaluations)."""
    return tiny_run(tmp_path_factory, "done", 3)


@pytest.fixture
def run(finished, tmp_path) -> Path:
    """A copy of the finished run to damage."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def genome_file(tmp_path: Path, text: str, name="g.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def npz(tmp_path: Path, labels) -> str:
    path = tmp_path / "mine.npz"
    np.savez(path, x=np.zeros((len(labels), 16, 16), np.uint8), y=np.array(labels))
    return f"npz:{path}"


def damage_snapshots(run: Path, how: str) -> None:
    newest = sorted((run / "snapshots").glob("gen-*.json"))[-1]
    if how == "deleted":
        shutil.rmtree(run / "snapshots")
    elif how == "fields missing":
        newest.write_text('{"generation": 1}\n')
    elif how == "wrong types":
        newest.write_text(re.sub(r'"next_id": \d+', '"next_id": "abc"', newest.read_text()))


LAYER = "space: layers\nlayers:\n- {height: 3, width: 3, filters: %s, inputs: [0]}\n"

# (what the user does, the words of the one-line answer). {tmp} is a fresh folder, {run} a copy
# of a finished run, {genome:TEXT} a genome file with TEXT, {npz:LABELS} an npz data set.
TABLE = [
    (["run", "--name", "../../x"], "name: must be one folder name"),
    (["run", "--name", "/abs/path"], "name: must be one folder name"),
    (["run", "--population", "99999999999999999999999999"], "population: 99999999999999999999999999 is above the most"),
    (["run", "--dataset", "mnist", "--data-dir", "/nonexistent"], "--data-dir names the folder to use"),
    (["run", "--data-dir", "{tmp}"], "fashion-mnist not found"),
    (["run", "--dataset", "{npz:0,1,2,57}"], "labels run to 57 but 54 of 0..57 never appear"),
    (["run", "--dataset", "{npz:0,1,2,1000}"], "labels run to 1000 but 997 of 0..1000 never appear"),
    (["run", "--dataset", "{npz:0,1,2,3}", "--classes", "2"], "label 3 >= classes=2"),
    (["run", "--space", "layers", "--filter-counts", "2000000"], "filter_counts: 2000000 is more than evonas allows"),
    (["inspect", "{genome:" + LAYER % "1e20" + "}"], "layers[0].filters: must be an integer, got '1e20'"),
    (["inspect", "{genome:" + LAYER % "1.0e+20" + "}"], "layers[0].filters: must be an integer, got 1e+20"),
    (["inspect", "{genome:" + LAYER % "2000000" + "}"], "layers[0].filters: 2000000 is more than evonas allows"),
    (["inspect", "{deep genome}"], "nested too deeply to be a genome"),
    (["inspect", "{huge genome}"], "bytes is more than a genome file may have"),
    (["resume", "{run}", "--generations", "1"], "has 3 generations done; --generations 1 is below that"),
    (["resume", "{run}", "--budget", "5"], "has 16 networks trained; --budget 5 is below that"),
    (["resume", "{run:config}"], "config.yaml: not valid YAML (line 4, column 1: expected the node content"),
    (["report", "{run:genome}"], "journal.jsonl: line 3: damaged record"),
    (["resume", "{run:genome}"], "journal.jsonl: line 3: damaged record"),
    (["front", "{run:genome}"], "journal.jsonl: line 3: damaged record"),
    (["report", "{run}", "--out", "{run}/journal.jsonl"], "is the run's own journal file; --out must name a new file"),
    (["report", "{run}", "--out", "{run}/config.yaml"], "is the run's own config file; --out must name a new file"),
    (["bench", "--in-flight", "a,b"], "bench: in_flight: expected tuple[int, ...], got 'a,b'"),
    (["bench", "--in-flight", "0"], "bench: in_flight: counts of 1 or more, such as 1,2,4; got 0"),
]


def prepare(arg: str, tmp_path: Path, run: Path) -> str:
    if arg == "{tmp}":
        return str(tmp_path)
    if arg.startswith("{genome:"):
        return str(genome_file(tmp_path, arg[len("{genome:"):-1]))
    if arg == "{deep genome}":
        return str(genome_file(tmp_path, "space: cells\nnormal: " + "[" * 5000 + "]" * 5000 + "\n"))
    if arg == "{huge genome}":
        return str(genome_file(tmp_path, "space: nb201\n" + "# filler\n" * 300_000))
    if arg.startswith("{npz:"):
        return npz(tmp_path, [int(x) for x in arg[5:-1].split(",")])
    if arg == "{run:config}":
        (run / "config.yaml").write_text("space:\n  space: nb201\n  bad: [\n")
    if arg == "{run:genome}":
        journal = (run / "journal.jsonl").read_text().splitlines()
        record = json.loads(journal[2])
        record["genome"] = {"space": "nb201", "arch": "|nor_conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"}
        (run / "journal.jsonl").write_text("\n".join([*journal[:2], json.dumps(record), *journal[3:]]) + "\n")
    if arg.startswith("{run}/"):
        return str(run / arg[len("{run}/"):])
    return str(run) if arg.startswith("{run") else arg


@pytest.mark.parametrize("args, words", TABLE, ids=[" ".join(a)[:60] for a, _ in TABLE])
def test_one_clear_line_exit_2_and_nothing_changed(args, words, tmp_path, run, capsys, monkeypatch):
    monkeypatch.setenv("EVONAS_NO_DOWNLOAD", "1")
    runs = tmp_path / "runs"
    runs.mkdir()
    args = [prepare(a, tmp_path, run) for a in args]
    before = files(run), files(runs)
    if args[0] == "run":
        args += ["--runs-dir", str(runs), *TINY[TINY.index("--no-report"):]]
    code = main(args)  # in this process: a traceback would be an exception here
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0], err
    assert (files(run), files(runs)) == before


# -- damage a resume repairs, with a warning ---------------------------------------------------

@pytest.fixture(scope="module")
def two_generations(tmp_path_factory) -> Path:
    """The same run as `finished`, stopped after 2 generations (made once, copied per test)."""
    return tiny_run(tmp_path_factory, "cut", 2)


@pytest.mark.parametrize("how", ["deleted", "fields missing", "wrong types"])
def test_a_damaged_snapshot_falls_back_and_the_resume_equals_the_run(finished, two_generations, tmp_path, how):
    shutil.copytree(two_generations, tmp_path / "cut")
    damage_snapshots(tmp_path / "cut", how)
    resumed = evonas("resume", tmp_path / "cut", "--generations", "3")
    assert resumed.returncode == 0, resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if "warning" in line]
    assert how == "deleted" or any("damaged snapshot" in w for w in warnings), resumed.stderr
    assert lines(tmp_path / "cut") == lines(finished)


def test_a_repeated_journal_line_is_left_out_with_a_one_line_warning(run):
    journal = (run / "journal.jsonl").read_text().splitlines()
    (run / "journal.jsonl").write_text("\n".join([*journal[:5], journal[4], *journal[5:]]) + "\n")
    result = evonas("front", run, "--json")
    assert result.returncode == 0, result.stderr
    warning = result.stderr.strip().splitlines()
    assert len(warning) == 1 and "line 6 repeats evaluation 4 (rung 0) of line 5; keeping line 5" in warning[0]
    assert warning[0].startswith("evonas: warning: ")


# -- two processes, kills, signals ---------------------------------------------------------------

def test_a_second_process_on_a_run_is_refused_naming_the_holder(run):
    before = files(run)
    with RunDir(run).locked():
        result = evonas("resume", run, "--generations", "4")
    assert result.returncode == 2 and f"in use by another evonas process (pid {os.getpid()})" in result.stderr
    assert files(run) == before
    # the lock died with its holder: nothing stale blocks the resume
    assert evonas("resume", run, "--generations", "4").returncode == 0


def test_a_run_killed_while_its_directory_is_made_leaves_no_dead_end(tmp_path):
    """What a kill between config.yaml and meta.json leaves: a hidden temporary folder, no run."""
    leftover = tmp_path / ".mine.tmp-99999"
    (leftover / "snapshots").mkdir(parents=True)
    (leftover / "config.yaml").write_text("space: {space: nb201}\n")
    assert evonas("resume", tmp_path / "mine").returncode == 2  # there is no run "mine"...
    made = evonas("run", *TINY, "--runs-dir", tmp_path, "--name", "mine", "--generations", "0")
    assert made.returncode == 0, made.stderr  # ...and the name is free
    assert RunDir.open(tmp_path / "mine").history().trained() == 4


def test_sigterm_stops_like_ctrl_c_and_the_run_resumes_to_the_same_journal(finished, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "evo_nas", "run", *TINY, "--runs-dir", str(tmp_path), "--name",
                             "term", "--generations", "3"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    wait_for_lines(tmp_path / "term" / "journal.jsonl", 6, proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=HANG)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1].startswith("evonas: stopped; the journal and the last snapshot")
    assert "Traceback" not in stderr
    assert evonas("resume", tmp_path / "term").returncode == 0
    assert lines(tmp_path / "term") == lines(finished)


def as_plain_user() -> list[str]:
    """A command prefix that runs without the privilege to ignore file permissions (root's
    CAP_DAC_OVERRIDE dropped), so a read-only folder is read-only even under root."""
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--inh-caps=-all"] if os.geteuid() == 0 else []


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root without setpriv ignores modes")
def test_a_read_only_run_is_refused_before_anything_trains(run):
    """A run directory we may read but not write: one line before any training, nothing written."""
    for path in [*run.rglob("*"), run]:
        os.chmod(path, 0o555 if path.is_dir() else 0o444)
    before = files(run)
    try:
        result = subprocess.run([*as_plain_user(), sys.executable, "-m", "evo_nas", "resume", str(run),
                                 "--generations", "4"], cwd=ROOT, text=True, capture_output=True, timeout=HANG)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "cannot write to the run directory" in result.stderr or "not writable" in result.stderr
        assert files(run) == before
    finally:
        for path in [run, *run.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
