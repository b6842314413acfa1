"""Whole runs on real data (tiny proxies): determinism, resume == uninterrupted (also after
SIGKILL), dedup, failures as data, config precedence, one-line errors."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from evo_nas import config as configs
from evo_nas import runner
from evo_nas.cli import cli, main
from evo_nas.store import RunDir
from tests.journal import TIMING_FIELDS, journal_lines
from tests.waiting import HANG, wait_for_lines

pytestmark = pytest.mark.slow  # every test here trains networks or starts processes

ROOT = Path(__file__).resolve().parents[1]
# NB201 cells at C=4, one cell per stage, 96 training images: ~0.3 s an evaluation on 2 cores.
TINY = ["--space", "nb201", "--init-channels", "4", "--depth", "1", "--train-limit", "96", "--val-limit", "64",
        "--bn-recalibration", "64", "--batch-size", "32", "--population", "4", "--no-report"]
TIMINGS = set(TIMING_FIELDS)


def journal(path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS}
            for line in Path(path, "journal.jsonl").read_text().splitlines()]


def evonas(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evo_nas", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=HANG)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of 3 generations (16 evaluations)."""
    runs = tmp_path_factory.mktemp("runs")
    assert main(["run", *TINY, "--runs-dir", str(runs), "--name", "full", "--generations", "3"]) == 0
    return runs / "full"


def test_a_run_writes_what_it_promises(reference):
    run = RunDir.open(reference)
    records = journal_lines(run.path)
    assert [r["id"] for r in records] == list(range(16))
    assert all(r["status"] == "ok" and 0 <= r["accuracy"] <= 1 and r["macs"] > 0 and r["params"] > 0 for r in records)
    assert {r["generation"] for r in records} == {0, 1, 2, 3}
    assert all(r["parents"] for r in records if r["generation"] > 0)
    config = yaml.safe_load(run.config_file.read_text())
    assert config["backend"]["device"] == "cpu" and config["search"]["population"] == 4
    assert config["stop"]["generations"] == 3 and config["skeleton"]["input_shape"] == [1, 28, 28]
    assert sorted(p.name for p in run.snapshot_dir.iterdir()) == [f"gen-0000{g}.json" for g in (1, 2, 3)]
    snapshot = run.snapshots()[0]
    assert snapshot["generation"] == 3 and snapshot["next_id"] == 16 and len(snapshot["population"]) == 4
    assert "rng" in set(snapshot)
    assert len(run.history_file.read_text().splitlines()) == 17
    assert run.meta()["reference_point"]["macs"] > 0


def test_same_seed_same_journal(reference, tmp_path):
    assert main(["run", *TINY, "--runs-dir", str(tmp_path), "--name", "again", "--generations", "3"]) == 0
    assert journal(tmp_path / "again") == journal(reference)


def test_stop_and_resume_equals_uninterrupted(reference, tmp_path):
    assert main(["run", *TINY, "--runs-dir", str(tmp_path), "--name", "part", "--generations", "1"]) == 0
    assert main(["resume", str(tmp_path / "part"), "--generations", "3"]) == 0
    assert journal(tmp_path / "part") == journal(reference)


def test_sigkill_mid_generation_then_resume_equals_uninterrupted(reference, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "evo_nas", "run", *TINY, "--runs-dir", str(tmp_path),
                             "--name", "killed", "--generations", "3"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal_file = tmp_path / "killed" / "journal.jsonl"
    wait_for_lines(journal_file, 10, proc)  # kill inside generation 2: after 10 of 16 evaluations
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(journal_file.read_text().splitlines())
    assert 10 <= done < 16, "the run should have been killed mid-way"
    result = evonas("resume", str(tmp_path / "killed"))
    assert result.returncode == 0, result.stderr
    assert journal(tmp_path / "killed") == journal(reference)


def test_torn_journal_line_is_dropped_and_rerun(reference, tmp_path):
    assert main(["run", *TINY, "--runs-dir", str(tmp_path), "--name", "torn", "--generations", "1"]) == 0
    path = tmp_path / "torn" / "journal.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:25])  # killed while writing the last line
    with pytest.warns(UserWarning) as caught:
        assert main(["resume", str(tmp_path / "torn"), "--generations", "3"]) == 0
    messages = [str(w.message) for w in caught]
    assert any("truncated last line" in m for m in messages)
    assert any("names evaluations the journal lacks; using an older one" in m for m in messages)
    assert journal(tmp_path / "torn") == journal(reference)


def test_duplicate_seeds_are_served_from_the_cache(tmp_path):
    seed = str(ROOT / "genomes" / "nb201_resnet.yaml")
    assert main(["run", *TINY, "--runs-dir", str(tmp_path), "--name", "dup", "--generations", "1",
                 "--seed-genomes", f"{seed},{seed}"]) == 0
    records = journal_lines(tmp_path / "dup")
    assert records[0]["operator"].startswith("seed:ResNet")
    twin = [r for r in records if r.get("cache_of") is not None]
    assert len(twin) == 1 and twin[0]["cache_of"] == 0 and twin[0]["accuracy"] == records[0]["accuracy"]
    keys = [r["key"] for r in records if r.get("cache_of") is None]
    assert len(records) == 8 and len(keys) == len(set(keys)) == 7  # the twin was not trained again


def test_failures_are_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    from evo_nas.evaluate import evaluator

    real = evaluator.count_macs
    calls = {"n": 0}

    def flaky(model, shape):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected failure in candidate")
        return real(model, shape)

    monkeypatch.setattr(evaluator, "count_macs", flaky)
    runner.start({"space": "nb201", "init_channels": 4, "depth": 1, "train_limit": 96, "val_limit": 64,
                  "bn_recalibration": 64, "batch_size": 32, "population": 4, "generations": 1,
                  "runs_dir": str(tmp_path), "name": "fail", "report": False})
    records = journal_lines(tmp_path / "fail")
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"].startswith("RuntimeError: injected failure in candidate (at ")
    assert len(records) == 8 and sum(r["status"] == "ok" for r in records) == 7


def test_nan_loss_is_a_failed_evaluation_and_a_generation_of_failures_stops_the_run(tmp_path, capsys):
    assert main(["run", *TINY, "--runs-dir", str(tmp_path), "--name", "nan", "--generations", "2",
                 "--lr", "1e12"]) == 2
    records = journal_lines(tmp_path / "nan")
    assert len(records) == 4 and all(r["status"] == "failed" and "nan" in r["error"].lower() for r in records)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no evaluation of generation 0 succeeded (4 tried); the most common reason" in err and "nan/inf" in err


def test_a_generation_of_infeasible_children_is_no_failure_and_the_run_goes_on(tmp_path):
    # aging under a parameter limit that only the initial population meets: its children are
    # infeasible (never trained, ranked by their excess), which is an answer, not a failure
    assert main(["run", *TINY, "--runs-dir", str(tmp_path), "--name", "tight", "--algorithm", "aging",
                 "--sample", "2", "--generations", "3", "--max-params", "5300"]) == 0
    records = journal_lines(tmp_path / "tight")
    assert {r["generation"] for r in records} == {0, 1, 2, 3}
    assert any(r["status"] == "infeasible" for r in records) and any(r["status"] == "ok" for r in records)


def test_config_file_then_flags(tmp_path):
    config = tmp_path / "search.yaml"
    config.write_text("population: 6\nepochs: 0.5\ngenerations: 0\nspace: nb201\ninit_channels: 4\ndepth: 1\n"
                      "train_limit: 96\nval_limit: 64\nbn_recalibration: 64\nreport: false\n")
    args = ["run", "--config", str(config), "--population", "4", "--runs-dir", str(tmp_path), "--name", "p"]
    assert main(args) == 0
    resolved = configs.flat_config(yaml.safe_load((tmp_path / "p" / "config.yaml").read_text()))
    assert resolved["population"] == 4  # flag over file
    assert resolved["epochs"] == 0.5  # file over default
    assert resolved["batch_size"] == configs.PRESETS["cpu"]["batch_size"]  # default (CPU preset)
    assert resolved["optimizer"] == "sgd"
    # config.yaml's own sections are a config file too
    assert main(["run", "--config", str(tmp_path / "p" / "config.yaml"), "--name", "q"]) == 0
    assert (tmp_path / "q" / "journal.jsonl").read_text().count("\n") == 4


@pytest.mark.parametrize("args, message", [
    (["run", "--population", "abc"], "Invalid value for '--population'"),
    (["run", "--population", "0"], "population: must be positive"),
    (["run", "--space", "graphs"], "space: must be one of cells, layers, nb201"),
    (["run", "--dataset", "mnist", "--data-dir", "/nonexistent"], "mnist"),
    (["run", "--seed-genomes", "nope.yaml"], "nope.yaml: no such genome file"),
    (["run", "--config", "missing.yaml"], "missing.yaml: cannot read config file"),
    (["resume", "/nonexistent/run"], "no such run directory"),
    (["inspect", "genomes/nope.yaml"], "no such genome file"),
])
def test_cli_errors_are_one_line_and_exit_2(args, message, tmp_path, monkeypatch):
    monkeypatch.setenv("EVONAS_NO_DOWNLOAD", "1")
    monkeypatch.chdir(ROOT)
    result = evonas(*args, "--runs-dir", str(tmp_path)) if args[0] == "run" else evonas(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_run_never_writes_into_an_existing_run(reference):
    before = {p: p.read_bytes() for p in reference.rglob("*") if p.is_file()}
    result = CliRunner().invoke(cli, ["run", *TINY, "--runs-dir", str(reference.parent), "--name", "full"])
    assert result.exit_code != 0 and "already exists" in str(result.exception or result.output)
    assert before == {p: p.read_bytes() for p in reference.rglob("*") if p.is_file()}


def test_resume_refuses_a_changed_config(reference, tmp_path):
    reference = Path(shutil.copytree(reference, tmp_path / "copy"))  # other tests compare with the original
    result = evonas("resume", str(reference), "--generations", "4", env={})
    assert result.returncode == 0  # extending is fine (and adds one generation here)
    run = RunDir(reference)
    edited = run.config_file.read_text().replace("lr: 0.4", "lr: 0.3")
    assert edited != run.config_file.read_text()
    run.config_file.write_text(edited)
    before = run.journal_file.read_bytes()
    result = evonas("resume", str(reference))
    assert result.returncode == 2 and "different lr would change the results" in result.stderr
    assert run.journal_file.read_bytes() == before


def test_ctrl_c_stops_cleanly_and_the_run_resumes_to_the_same_journal(reference, tmp_path):
    # A shell's background job ignores SIGINT, and Python then never installs its Ctrl-C
    # handler: give the child the default disposition, as a terminal would.
    proc = subprocess.Popen([sys.executable, "-m", "evo_nas", "run", *TINY, "--runs-dir", str(tmp_path),
                             "--name", "interrupted", "--generations", "3"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    journal_file = tmp_path / "interrupted" / "journal.jsonl"
    wait_for_lines(journal_file, 6, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=HANG)
    assert proc.returncode == 130
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("evonas: stopped;") and f"evonas resume {tmp_path / 'interrupted'}" in last
    assert "Traceback" not in stderr
    assert main(["resume", str(tmp_path / "interrupted")]) == 0
    assert journal(tmp_path / "interrupted") == journal(reference)


def test_an_npz_whose_labels_skip_a_class_trains_with_the_class_count_named(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "gap.npz"  # labels 0 and 2: class 1 never appears, --classes 3 says it exists
    np.savez(path, x=rng.integers(0, 255, (160, 12, 12), dtype=np.uint8), y=np.array([0, 2] * 80))
    run = runner.start({"dataset": f"npz:{path}", "classes": 3, "space": "nb201", "init_channels": 4, "depth": 1,
                        "train_limit": 64, "val_limit": 16, "bn_recalibration": 16, "batch_size": 16,
                        "population": 2, "generations": 0, "report": False, "runs_dir": str(tmp_path / "runs"),
                        "name": "gap"})
    assert [r.status.value for r in run.history().records] == ["ok", "ok"]


def test_a_fidelity_directory_opens_in_report_and_front(tmp_path, capsys):
    args = ["fidelity", *TINY[:8], "--bn-recalibration", "32", "--batch-size", "32", "--genomes", "4",
            "--no-reference", "--runs-dir", str(tmp_path), "--name", "fid"]
    assert main(args) == 0
    assert main(["report", str(tmp_path / "fid")]) == 0
    capsys.readouterr()
    assert main(["front", str(tmp_path / "fid"), "--json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert (tmp_path / "fid" / "report.html").is_file() and front and all(r["accuracy"] > 0 for r in front)
