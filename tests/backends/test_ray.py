"""The Ray backend on a local cluster started by the test (loopback, 2 CPUs)."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from evo_nas import runner
from evo_nas.cli import main
from tests.journal import TIMING_FIELDS
from tests.waiting import HANG

pytestmark = pytest.mark.slow  # every test here trains networks or starts processes

ray = pytest.importorskip("ray")

TIMINGS = set(TIMING_FIELDS) | {"device"}
BASE = {"space": "nb201", "init_channels": 4, "depth": 1, "train_limit": 96, "val_limit": 64,
        "bn_recalibration": 64, "batch_size": 32, "population": 4, "generations": 2, "report": False,
        "cpu_threads": 1}
RAY = Path(sys.executable).with_name("ray")


def sorted_journal(path: Path) -> list[dict]:
    records = [json.loads(line) for line in (path / "journal.jsonl").read_text().splitlines()]
    return sorted(({k: v for k, v in r.items() if k not in TIMINGS} for r in records), key=lambda r: r["id"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """`ray start --head` on loopback with 2 CPUs; its address; `ray stop` afterwards."""
    port = free_port()
    temp = tmp_path_factory.mktemp("ray")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([str(RAY), "start", "--head", "--num-cpus", "2", "--num-gpus", "0", "--port", str(port),
                    "--node-ip-address", "127.0.0.1", "--include-dashboard", "false", "--temp-dir", str(temp),
                    "--disable-usage-stats"], check=True, capture_output=True, env=env, timeout=HANG)
    yield f"127.0.0.1:{port}"
    subprocess.run([str(RAY), "stop", "--force"], capture_output=True, env=env, timeout=HANG)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return sorted_journal(runner.start({**BASE, "runs_dir": str(tmp_path_factory.mktemp("serial")), "name": "s"}).path)


def start(tmp_path, name, address):
    return runner.start({**BASE, "runs_dir": str(tmp_path), "name": name, "backend": "ray",
                         "ray_address": address}).path


def test_a_search_on_ray_matches_the_serial_journal(cluster, serial, tmp_path):
    assert sorted_journal(start(tmp_path, "ray", cluster)) == serial


def test_a_killed_ray_worker_is_retried_and_the_run_completes(cluster, serial, tmp_path):
    journal = tmp_path / "killed" / "journal.jsonl"
    killed = []

    def kill_an_actor():
        deadline = time.monotonic() + HANG  # a bound only against a hang: the wait is on the journal
        while time.monotonic() < deadline and not killed:
            if journal.exists() and len(journal.read_text().splitlines()) >= 3:
                found = subprocess.run(["pgrep", "-f", "ray::EvaluatorActor"], capture_output=True, text=True)
                pids = [int(p) for p in found.stdout.split()]
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
            time.sleep(0.05)

    thread = threading.Thread(target=kill_an_actor)
    thread.start()
    path = start(tmp_path, "killed", cluster)
    thread.join()
    assert killed, "no Ray worker was killed"
    assert sorted_journal(path) == serial  # nothing lost, nothing twice, nothing changed


def test_without_ray_the_backend_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does when it is not installed
    code = main(["run", "--backend", "ray", "--space", "nb201", "--runs-dir", str(tmp_path), "--name", "x",
                 "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install 'evo-nas[ray]'" in err[0]
    assert list(tmp_path.iterdir()) == []  # nothing written
