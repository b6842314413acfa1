"""The local backend: same journal as the serial one, and a killed worker changes nothing."""

import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from evo_nas import config as configs
from evo_nas import runner
from evo_nas.backends.local import LocalBackend, plan_workers
from evo_nas.records import Result, Status
from tests.fakes import Script, ScriptedEvaluator, peers
from tests.journal import TIMING_FIELDS
from tests.waiting import HANG, wait_for_lines

pytestmark = pytest.mark.slow  # every test here trains networks or starts processes

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


ROOT = Path(__file__).resolve().parents[2]
FLAGS = ["--space", "nb201", "--init-channels", "4", "--depth", "1", "--train-limit", "96", "--val-limit", "64",
         "--bn-recalibration", "64", "--batch-size", "32", "--population", "4", "--generations", "2", "--no-report",
         "--cpu-threads", "1"]  # BASE as flags


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["ctrl-c", "kill -9"])
def test_stopped_local_workers_go_quietly_and_the_resume_gives_the_serial_journal(serial, tmp_path, stop):
    """Ctrl-C in a terminal reaches the whole process group, workers included: only the driver
    answers, with its one line. kill -9 of the driver orphans the workers: they end at their
    next word to it, without a traceback. Either way the resume gives the serial journal."""
    log = tmp_path / "stderr"
    with open(log, "w") as err:  # a file, not a pipe: orphaned workers write to it after the driver died
        # start_new_session: a process group of its own, as a terminal's foreground job has
        proc = subprocess.Popen([sys.executable, "-m", "evo_nas", "run", *FLAGS, "--backend", "local", "--workers",
                                 "2", "--runs-dir", str(tmp_path), "--name", "x"], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        wait_for_lines(tmp_path / "x" / "journal.jsonl", 2, proc)
        workers = children(proc.pid)
        if stop == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.kill()
        proc.wait(timeout=HANG)
        deadline = time.monotonic() + HANG
        while any(alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "orphaned workers hang"
            time.sleep(0.05)
    stderr = log.read_text()
    assert "Traceback" not in stderr and "Error" not in stderr, stderr
    if stop == "ctrl-c":
        assert proc.returncode == 130 and stderr.strip().splitlines()[-1].startswith("evonas: stopped;"), stderr
    assert runner.resume(tmp_path / "x").path == tmp_path / "x"
    assert sorted_journal(tmp_path / "x") == serial


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie left to init is gone for this purpose)."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


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
    from evo_nas.evaluate.evaluator import EvalSettings, Evaluator
    from evo_nas.evaluate.inflight import run_in_flight
    from evo_nas.journaled import Request as Task

    given = {**BASE, "train_limit": 2048, "batch_size": 128, "epochs": 1.0}  # epochs: not the preset's image budget
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


# ---------------------------------------------------------------- workers with several slots, on the CPU

def local(slots: int = 2, time_limit: float = 0.0, **backend) -> LocalBackend:
    """A local backend of one CPU worker with `slots` candidates in flight: the same loop as a
    GPU worker's, with no streams."""
    made = LocalBackend(configs.BackendConfig(workers=1, device="cpu", **backend), time_limit)
    made.slots = slots
    return made


def mapped(backend: LocalBackend, fn, tasks) -> dict:
    try:
        return dict(backend.map(fn, tasks))
    finally:
        backend.close()


def test_a_worker_with_two_slots_keeps_two_candidates_in_flight():
    results = mapped(local(slots=2), ScriptedEvaluator(), [Script(i, steps=4) for i in range(4)])
    assert [results[i].accuracy for i in range(4)] == [0.0, 0.01, 0.02, 0.03]
    pids = {peers(r)[0] for r in results.values()}
    assert len(pids) == 1 and pids != {os.getpid()}  # one worker process ran them all
    assert max(peers(r)[1] for r in results.values()) == 2


POISON = RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
                      "asynchronously reported at some other API call, so the stacktrace below might be incorrect.")


def test_a_poisoned_worker_is_replaced_and_its_candidates_retried_alone():
    """A CUDA error that poisons the context ends the worker; every candidate in flight is sent
    again to a fresh worker, alone, so only the one that causes it fails, with the reason."""
    tasks = [Script(0, steps=6), Script(1, steps=2, raises=POISON), Script(2, steps=3), Script(3, steps=2)]
    results = mapped(local(slots=2), ScriptedEvaluator(), tasks)
    bad = results.pop(1)
    assert bad.status is Status.FAILED and "illegal memory access" in bad.error and bad.error.endswith("2 times")
    assert "CUDA context is lost" in bad.error and "restarted" in bad.error
    assert all(r.ok for r in results.values())
    assert peers(results[0])[1] == 1  # it was in flight with task 1, so it was run again alone


def test_only_a_silent_worker_is_killed_as_hung():
    """With a time limit, a worker that says nothing for 2 x limit + grace is killed and its
    candidates retried; one that steps says so (heartbeats) however long its candidates run."""
    backend = local(slots=2, time_limit=0.25)
    backend.grace, backend.heartbeat = 1.5, 0.1  # silence allowed: 2 s
    tasks = [Script(0, steps=16, step_seconds=0.2), Script(1, hang=30), Script(2, steps=2)]
    results = mapped(backend, ScriptedEvaluator(), tasks)
    assert results[0].ok and results[2].ok  # task 0 steps for 3 s and more: busy, never taken for hung
    # task 1 would end fine after its 30 s step: it failed because its worker was killed, twice
    assert results[1].status is Status.FAILED and "no word from its worker for 2s" in results[1].error
    assert results[1].error.endswith("2 times")


def test_the_serial_backend_records_a_poisoned_candidate_then_stops():
    from evo_nas.backends.serial import SerialBackend
    from evo_nas.errors import DeviceLost

    got = []
    with pytest.raises(DeviceLost, match="during evaluation 1 left this process unable to use the GPU"):
        for i, result in SerialBackend().map(ScriptedEvaluator(), [Script(0), Script(1, raises=POISON), Script(2)]):
            got.append((i, result))
    assert [i for i, _ in got] == [0, 1] and got[0][1].ok
    assert got[1][1].status is Status.FAILED and "illegal memory access" in got[1][1].error


# ---------------------------------------------------------------- CUDA: slots, a poisoned context

def cuda_settings(**extra):
    from evo_nas.evaluate.evaluator import EvalSettings

    given = {**BASE, "train_limit": 2048, "batch_size": 128, "epochs": 1.0, **extra}
    cfg = configs.from_mapping(given, "test", "cuda", data_shape=runner.dataset_shape(configs.from_mapping(given)))
    return cfg, EvalSettings.of(cfg)


def cuda_tasks(cfg, count: int):
    from evo_nas.journaled import Request as Task

    space = cfg.space.make(cfg.skeleton)
    rng = random.Random(1)
    return [Task(i, space.sample(rng), i, 1.0) for i in range(count)]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_gpu_worker_with_two_slots_gives_what_candidates_give_alone():
    """A worker process spawned with 2 slots: its candidates train on the graph path, each with
    a result close to the same candidate trained alone in this process (CUDA kernels are not
    bit-deterministic: within 0.03 accuracy)."""
    from evo_nas.evaluate.evaluator import Evaluator

    cfg, settings = cuda_settings(slots_per_gpu=2)
    tasks = cuda_tasks(cfg, 4)
    evaluator = Evaluator(settings)
    alone = [evaluator(task) for task in tasks]
    backend = LocalBackend(configs.BackendConfig(device="cuda", workers=1, slots_per_gpu=2))
    assert backend.slots == 2
    together = mapped(backend, evaluator, tasks)
    for i, a in enumerate(alone):
        b = together[i]
        assert a.ok and b.ok and b.path == "graph", (a, b)
        assert abs(a.accuracy - b.accuracy) < 0.03 and abs(a.train_loss - b.train_loss) < 0.1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_device_side_assert_in_one_slot_restarts_the_worker_and_fails_that_candidate_only():
    """Task 1 triggers a device-side assert while tasks 0 and 2 are in flight beside it: the
    worker ends, every candidate in flight is retried alone in a fresh worker, task 1 fails
    there again and is recorded with the reason; the others finish."""
    from tests.fakes import FaultOnCuda

    cfg, settings = cuda_settings()
    backend = LocalBackend(configs.BackendConfig(device="cuda", workers=1, slots_per_gpu=3))
    results = mapped(backend, FaultOnCuda(settings, bad=1), cuda_tasks(cfg, 4))
    bad = results.pop(1)
    assert bad.status is Status.FAILED and "device-side assert" in bad.error and bad.error.endswith("2 times")
    assert all(r.ok and r.path == "graph" for r in results.values()), results


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_serial_backend_stops_after_recording_a_device_side_assert():
    """In-process the context cannot be replaced: the candidate is recorded failed, then the run
    stops with DeviceLost. (In a child process: the context it poisons is the child's.)"""
    code = textwrap.dedent("""
        from evo_nas.backends.serial import SerialBackend
        from evo_nas.errors import DeviceLost
        from tests.backends.test_local import cuda_settings, cuda_tasks
        from tests.fakes import FaultOnCuda

        cfg, settings = cuda_settings()
        seen = []
        try:
            for i, result in SerialBackend().map(FaultOnCuda(settings, bad=1), cuda_tasks(cfg, 3)):
                seen.append((i, str(result.status), result.error))
        except DeviceLost as lost:
            print("LOST", str(lost).splitlines()[0][:200])
        print("SEEN", seen)
    """)
    run = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[2], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "LOST cuda" in run.stdout and "during evaluation 1" in run.stdout
    seen = run.stdout.split("SEEN", 1)[1]
    assert "(0, 'ok', None)" in seen and "(1, 'failed'" in seen and "device-side assert" in seen and "(2," not in seen
