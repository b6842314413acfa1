"""The local backend: same journal as the serial one, and a killed worker changes nothing."""

import json
import multiprocessing as mp
import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
import torch

from evo_nas import config as configs
from evo_nas import runner
from evo_nas.backends.local import LocalBackend, plan_workers
from evo_nas.genome import to_dict

TIMINGS = set(runner.TIMING_FIELDS) | {"device"}
BASE = {"space": "nb201", "init_channels": 4, "layers": 1, "train_limit": 96, "val_limit": 64,
        "bn_recalibration": 64, "batch_size": 32, "population": 4, "generations": 2, "report": False,
        "cpu_threads": 1}


def sorted_journal(path: Path) -> list[dict]:
    records = [json.loads(line) for line in (path / "journal.jsonl").read_text().splitlines()]
    return sorted(({k: v for k, v in r.items() if k not in TIMINGS} for r in records),
                  key=lambda r: (r["id"], r["rung"]))


def start(tmp_path, name, **extra):
    cfg = configs.from_mapping({**BASE, "runs_dir": str(tmp_path), "name": name, **extra})
    return runner.start(cfg).path


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    return sorted_journal(start(tmp_path_factory.mktemp("serial"), "serial"))


def test_local_workers_give_the_serial_journal(serial, tmp_path):
    assert sorted_journal(start(tmp_path, "local", backend="local", workers=2)) == serial


def test_a_killed_worker_is_replaced_and_its_candidate_retried(serial, tmp_path):
    journal = tmp_path / "killed" / "journal.jsonl"
    killed = []

    def kill_a_worker():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if journal.exists() and len(journal.read_text().splitlines()) >= 3:
                workers = [p for p in mp.active_children() if p.name.startswith("evonas-worker")]
                if workers:
                    os.kill(workers[0].pid, signal.SIGKILL)
                    killed.append(workers[0].pid)
                    return
            time.sleep(0.02)

    thread = threading.Thread(target=kill_a_worker)
    thread.start()
    path = start(tmp_path, "killed", backend="local", workers=2)
    thread.join()
    assert killed, "no worker was killed"
    records = sorted_journal(path)
    assert [r["id"] for r in records] == sorted({r["id"] for r in records})  # nothing twice
    assert records == serial  # nothing lost, nothing changed


def test_worker_plan_on_cpu():
    cfg = configs.resolve(configs.RunConfig(workers=3, slots_per_gpu=4), "cpu")
    assert plan_workers(cfg) == (["cpu", "cpu", "cpu"], 1)


def crash_on_two(task):
    if task == 2:
        os._exit(3)  # the worker process dies without a word
    return {"status": "ok", "value": task * 10}


def test_a_candidate_that_kills_two_workers_is_failed(tmp_path):
    backend = LocalBackend(configs.resolve(configs.RunConfig(workers=2), "cpu"))
    try:
        results = dict(backend.map(crash_on_two, [0, 1, 2, 3]))
    finally:
        backend.close()
    assert results[0] == {"status": "ok", "value": 0} and results[3] == {"status": "ok", "value": 30}
    assert results[2]["status"] == "failed" and "worker died twice (exit code 3)" in results[2]["error"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_candidates_in_flight_on_cuda_streams_finish_with_sane_results():
    """Several candidates interleaved on streams of one process (the local worker's loop):
    every one trains on the graph path and ends finite, and so does a second round."""
    from evo_nas.backends.local import run_in_flight
    from evo_nas.evaluate.evaluator import Task

    cfg = configs.resolve(configs.from_mapping({**BASE, "device": "cuda", "train_limit": 2048, "batch_size": 128}),
                          "cuda")
    evaluator = runner.make_evaluator(cfg)
    space = runner.make_space(cfg)
    rng = random.Random(0)
    tasks = [Task(i, to_dict(space.sample(rng)), i, 1.0) for i in range(6)]
    for _ in range(2):
        results = run_in_flight(evaluator, tasks, [torch.cuda.Stream() for _ in range(3)])
        torch.cuda.synchronize()
        assert all(r["status"] == "ok" and 0 <= r["accuracy"] <= 1 for r in results), results
        assert {r["path"] for r in results} == {"graph"}
