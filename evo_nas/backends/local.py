"""The local backend: long-lived worker processes, one per GPU (K candidates in flight each) or
CPU workers; dead, hung or poisoned workers are replaced (docs/backends.md).   [stdlib; the
worker's loop, with torch, is evo_nas.evaluate.inflight]
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait

from evo_nas.backends import after_death
from evo_nas.config import BackendConfig
from evo_nas.errors import DeviceLost
from evo_nas.records import Result

POLL = 0.5  # seconds between checks for dead or hung workers while waiting for results
GRACE = 60.0  # seconds on top of twice the time limit that a worker may say nothing, then it is killed
HEARTBEAT = 5.0  # a stepping worker says it is alive at most this often
# What a worker sends besides (task index, result): a heartbeat, and "my CUDA context is lost"
# (with the reason) just before it exits with EXIT_LOST.
ALIVE, LOST = -1, -2
EXIT_LOST = 75


@dataclass
class _Worker:
    device: str
    slots: int
    process: mp.Process
    conn: Connection  # the driver's end of this worker's pipe
    in_flight: dict = field(default_factory=dict)  # task index -> (task, tries)
    heard: float = field(default_factory=time.monotonic)  # last message, or when it last got work while idle
    started: bool = False  # it said it is up (imports and unpickling, which take seconds, are done)
    lost: str | None = None  # why its CUDA context is unusable, if it said so
    steps: dict = field(default_factory=dict)  # task index -> (steps done, steps), from its last heartbeat


class LocalBackend:
    name = "local"

    def __init__(self, cfg: BackendConfig, time_limit: float = 0.0):
        self.cfg, self.time_limit = cfg, time_limit
        self.devices, self.slots = plan_workers(cfg)
        self.grace, self.heartbeat = GRACE, HEARTBEAT
        self.context = mp.get_context("spawn")  # CUDA cannot be forked
        self.workers: list[_Worker] = []
        self.fn = None
        self.on_steps: Callable[[dict], None] | None = None  # this map's: {task index: (steps done, steps)}

    def map(self, fn: Callable, tasks: Sequence, on_steps: Callable[[dict], None] | None = None
            ) -> Iterator[tuple[int, Result]]:
        self.on_steps = on_steps
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
        """Fill free slots in order. A task sent again after its worker died runs alone in
        its worker, so that a second death is its own (docs/backends.md)."""
        for worker in self.workers:
            while todo and _takes(worker, todo[0][2]):
                i, task, tries = todo.popleft()
                if not worker.in_flight:
                    worker.heard = time.monotonic()  # time idle is not silence
                worker.in_flight[i] = (task, tries)
                try:
                    worker.conn.send((i, task))
                except OSError:
                    pass  # a dead worker: _check_workers sends its tasks elsewhere

    def _collect(self, todo: deque) -> Iterator[tuple[int, Result]]:
        ready = wait([w.conn for w in self.workers], timeout=POLL)
        for worker in self.workers:
            while worker.conn in ready and worker.lost is None:
                try:
                    i, message = worker.conn.recv()
                except (EOFError, OSError):
                    break  # the worker died; _check_workers below deals with it
                worker.heard, worker.started = time.monotonic(), True
                if i == LOST:
                    worker.lost = message
                elif i == ALIVE and message:
                    worker.steps = message
                    self._tell_steps()
                elif i in worker.in_flight:
                    del worker.in_flight[i]
                    yield i, message
                if not worker.conn.poll():
                    break
        yield from self._check_workers(todo)

    def _tell_steps(self) -> None:
        if self.on_steps is not None:
            self.on_steps({i: done for w in self.workers for i, done in w.steps.items() if i in w.in_flight})

    def _check_workers(self, todo: deque) -> Iterator[tuple[int, Result]]:
        for wid, worker in enumerate(self.workers):
            why = self._trouble(worker)
            if why is None:
                continue
            worker.process.kill()
            worker.process.join()
            worker.conn.close()
            for i, (task, tries) in worker.in_flight.items():
                failed = after_death(tries, why, worker.device)
                if failed is not None:
                    yield i, failed
                else:
                    todo.appendleft((i, task, tries + 1))
            self.workers[wid] = self._spawn(worker.device, wid)

    def _trouble(self, worker: _Worker) -> str | None:
        """Why `worker` must be replaced (dead, CUDA context lost, silent too long), or None."""
        if worker.lost is not None:
            return f"{worker.lost}; its worker was restarted"
        if not worker.process.is_alive():
            return f"worker died (exit code {worker.process.exitcode})"
        silence = 2 * self.time_limit + self.grace
        if self.time_limit and worker.started and worker.in_flight and time.monotonic() - worker.heard > silence:
            return f"no word from its worker for {silence:g}s (time limit {self.time_limit:g}s): worker killed"
        return None

    def _spawn(self, device: str, wid: int) -> _Worker:
        ours, theirs = self.context.Pipe()
        fn = self.fn.on(device) if hasattr(self.fn, "on") else self.fn
        process = self.context.Process(target=worker_main, args=(fn, device, self.slots, theirs, self.heartbeat),
                                       daemon=True, name=f"evonas-worker-{wid}")
        with _sigint_blocked():  # a terminal's Ctrl-C reaches the workers too: theirs is the driver's
            process.start()
        theirs.close()  # the child has its own copy
        return _Worker(device, self.slots, process, ours)

    def close(self) -> None:
        """Stop the workers: an idle one when told to, one with work in flight at once (nobody
        collects that work any more: the driver was stopped, and a resume runs it again)."""
        for worker in self.workers:
            if worker.in_flight:
                worker.process.kill()
                continue
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


def _takes(worker: _Worker, tries: int) -> bool:
    """Whether `worker` takes a task sent `tries` times before: a retried task only an idle
    worker, and nothing joins a retried task."""
    if not worker.in_flight:
        return True
    alone = any(t > 0 for _, t in worker.in_flight.values())
    return tries == 0 and not alone and len(worker.in_flight) < worker.slots


def plan_workers(cfg: BackendConfig) -> tuple[list[str], int]:
    """Devices of the workers and candidates in flight per worker: one worker per GPU with
    `slots_per_gpu` streams; on CPU `workers` processes (default 1) with one slot each."""
    if cfg.device == "cuda":
        from evo_nas.evaluate.devices import gpu_count

        gpus = gpu_count()
        count = cfg.workers or gpus
        return [f"cuda:{k % gpus}" for k in range(count)], cfg.slots_per_gpu
    return ["cpu"] * (cfg.workers or 1), 1


def worker_main(fn, device: str, slots: int, conn: Connection, heartbeat: float = HEARTBEAT) -> None:
    """A worker process: evaluate the tasks the driver sends until it sends None. A poisoned
    CUDA context ends the process: the driver is told why, then it exits with EXIT_LOST.
    Ctrl-C is the driver's to handle (it stops the workers); a driver that died (kill -9) ends
    the worker quietly at its next word to it, with nothing to report to anyone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked since its start: see _spawn
    from evo_nas.evaluate.inflight import serve

    try:
        conn.send((ALIVE, None))  # up: from now on silence counts
        try:
            serve(fn, device, slots, conn, _Heartbeat(conn, heartbeat))
        except DeviceLost as lost:
            conn.send((LOST, lost.result.error if lost.result is not None else str(lost)))
            conn.close()
            os._exit(EXIT_LOST)  # no cleanup: every CUDA call, a destructor's too, would fail
    except (EOFError, BrokenPipeError, ConnectionResetError):
        os._exit(0)  # the driver is gone


@contextlib.contextmanager
def _sigint_blocked():
    """SIGINT blocked in this thread while a worker is started: the new process inherits the
    mask, so that a Ctrl-C during its start-up waits until worker_main ignores it. Here the
    signal only waits too: it is handled (KeyboardInterrupt) as soon as the block ends."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class _Heartbeat:
    """Tells the driver, at most every `every` seconds, that this worker still steps, and how
    far each of its candidates is: {task index: (steps done, steps)}."""

    def __init__(self, conn: Connection, every: float):
        self.conn, self.every, self.last = conn, every, time.monotonic()

    def __call__(self, steps: dict) -> None:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.conn.send((ALIVE, dict(steps)))
            self.last = now
