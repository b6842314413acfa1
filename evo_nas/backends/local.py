"""The local backend: long-lived worker processes, one per GPU (K candidates in flight each) or
CPU workers; dead or hung workers are replaced (docs/backends.md).   [stdlib; the worker's
loop, with torch, is evo_nas.evaluate.inflight]
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from evo_nas.backends import after_death
from evo_nas.config import BackendConfig
from evo_nas.records import Result, Status

POLL = 0.5  # seconds between checks for dead or overdue workers while waiting for results
GRACE = 60.0  # seconds on top of twice the time limit before a worker is killed


@dataclass
class _Worker:
    device: str
    slots: int
    process: mp.Process
    conn: Connection  # the driver's end of this worker's pipe
    in_flight: dict = field(default_factory=dict)  # task index -> (task, tries, started)


class LocalBackend:
    name = "local"

    def __init__(self, cfg: BackendConfig, time_limit: float = 0.0):
        self.cfg, self.time_limit = cfg, time_limit
        self.devices, self.slots = plan_workers(cfg)
        self.context = mp.get_context("spawn")  # CUDA cannot be forked
        self.workers: list[_Worker] = []
        self.fn = None

    def map(self, fn: Callable, tasks: Sequence) -> Iterator[tuple[int, dict]]:
        if fn is not self.fn:
            self.close()
            self.fn = fn
            self.workers = [self._spawn(device, wid) for wid, device in enumerate(self.devices)]
        todo = deque((i, task, 0) for i, task in enumerate(tasks))
        left = len(tasks)
        while left:
            self._assign(todo)
            for i, result in self._collect(todo):
                left -= 1
                yield i, result

    def _assign(self, todo: deque) -> None:
        for worker in self.workers:
            while todo and len(worker.in_flight) < worker.slots:
                i, task, tries = todo.popleft()
                worker.in_flight[i] = (task, tries, time.monotonic())
                try:
                    worker.conn.send((i, task))
                except OSError:
                    pass  # a dead worker: _check_workers sends its tasks elsewhere

    def _collect(self, todo: deque) -> Iterator[tuple[int, dict]]:
        ready = wait([w.conn for w in self.workers], timeout=POLL)
        for worker in self.workers:
            if worker.conn not in ready:
                continue
            try:
                i, result = worker.conn.recv()
            except (EOFError, OSError):
                continue  # the worker died; _check_workers below deals with it
            if i in worker.in_flight:
                del worker.in_flight[i]
                yield i, result
        yield from self._check_workers(todo)

    def _check_workers(self, todo: deque) -> Iterator[tuple[int, dict]]:
        limit = self.time_limit
        for wid, worker in enumerate(self.workers):
            overdue = [i for i, (_, _, started) in worker.in_flight.items()
                       if limit and time.monotonic() - started > 2 * limit + GRACE]
            if worker.process.is_alive() and not overdue:
                continue
            code = worker.process.exitcode
            worker.process.kill()
            worker.process.join()
            worker.conn.close()
            for i, (task, tries, _) in worker.in_flight.items():
                if i in overdue:
                    yield i, Result(Status.FAILED, error=f"time limit {limit:g}s: worker killed after "
                                                         f"{2 * limit + GRACE:g}s", device=worker.device)
                elif overdue:
                    todo.appendleft((i, task, tries))  # an innocent bystander of the kill
                elif (failed := after_death(tries, f"worker died (exit code {code})", worker.device)) is not None:
                    yield i, failed
                else:
                    todo.appendleft((i, task, tries + 1))
            self.workers[wid] = self._spawn(worker.device, wid)

    def _spawn(self, device: str, wid: int) -> _Worker:
        ours, theirs = self.context.Pipe()
        fn = self.fn.on(device) if hasattr(self.fn, "on") else self.fn
        process = self.context.Process(target=worker_main, args=(fn, device, self.slots, theirs),
                                       daemon=True, name=f"evonas-worker-{wid}")
        process.start()
        theirs.close()  # the child has its own copy
        return _Worker(device, self.slots, process, ours)

    def close(self) -> None:
        for worker in self.workers:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in self.workers:
            worker.process.join(timeout=10)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self.workers = []
        self.fn = None


def plan_workers(cfg: BackendConfig) -> tuple[list[str], int]:
    """Devices of the workers and candidates in flight per worker: one worker per GPU with
    `slots_per_gpu` streams; on CPU `workers` processes (default 1) with one slot each."""
    if cfg.device == "cuda":
        from evo_nas.evaluate.devices import gpu_count

        gpus = gpu_count()
        count = cfg.workers or gpus
        return [f"cuda:{k % gpus}" for k in range(count)], cfg.slots_per_gpu
    return ["cpu"] * (cfg.workers or 1), 1


def worker_main(fn, device: str, slots: int, conn: Connection) -> None:
    """A worker process: evaluate the tasks the driver sends until it sends None."""
    from evo_nas.evaluate.inflight import serve

    serve(fn, device, slots, conn)
