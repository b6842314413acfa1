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
from evo_nas.records import TIMING_FIELDS, Result, Status

TIMINGS = set(TIMING_FIELDS) | {"device"}
BASE = {"space": "nb201", "init_channels": 4, "depth": 1, "train_limit": 96, "val_limit": 64,
        "bn_recalibration": 64, "batch_size": 32, "population": 4, "generations": 2, "report": False,
        "cpu_threads": 1}


def sorted_journal(path: Path) -> list[dict]:
    records = [json.loads(line) for line in (path / "journal.jsonl").read_text().splitlines()]
    return sorted(({k: v for k, v in r.items() if k not in TIMINGS} for r in records),
                  key=lambda r: (r["id"], r["rung"]))


def start(tmp_path, name, **extra):
    return runner.start({**BASE, "runs_dir": str(tmp_path), "name": name, **extra}).path


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
    cfg = configs.BackendConfig(workers=3, slots_per_gpu=4, device="cpu")
    assert plan_workers(cfg) == (["cpu", "cpu", "cpu"], 1)


def crash_on_two(task):
    if task == 2:
        os._exit(3)  # the worker process dies without a word
    return Result(Status.OK, accuracy=task / 10)


def test_a_candidate_that_kills_two_workers_is_failed(tmp_path):
    backend = LocalBackend(configs.BackendConfig(workers=2, device="cpu"))
    try:
        results = dict(backend.map(crash_on_two, [0, 1, 2, 3]))
    finally:
        backend.close()
    assert results[0] == Result(Status.OK, accuracy=0.0) and results[3] == Result(Status.OK, accuracy=0.3)
    assert results[2].status is Status.FAILED and "worker died (exit code 3), 2 times" in results[2].error


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_candidates_in_flight_on_cuda_streams_finish_with_sane_results():
    """Several candidates interleaved on streams of one process (the local worker's loop):
    every one trains on the graph path and ends finite, and so does a second round."""
    from evo_nas.evaluate.evaluator import EvalSettings, Evaluator, Task
    from evo_nas.evaluate.inflight import run_in_flight

    given = {**BASE, "train_limit": 2048, "batch_size": 128}
    cfg = configs.from_mapping(given, "test", "cuda", data_shape=runner.dataset_shape(configs.from_mapping(given)))
    evaluator = Evaluator(EvalSettings.of(cfg))
    space = cfg.space.make(cfg.skeleton)
    rng = random.Random(0)
    tasks = [Task(i, space.sample(rng), i, 1.0) for i in range(6)]
    for _ in range(2):
        results = run_in_flight(evaluator, tasks, [torch.cuda.Stream() for _ in range(3)])
        torch.cuda.synchronize()
        assert all(r.ok and 0 <= r.accuracy <= 1 for r in results), results
        assert {r.path for r in results} == {"graph"}
