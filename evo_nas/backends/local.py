"""The local backend: long-lived worker processes, one per GPU slot group (or CPU workers).

Each worker loads the data once and keeps it on its device, then evaluates whatever the
driver sends it. With `slots_per_gpu` K > 1 a GPU worker keeps K candidates in flight in
one process, each on its own CUDA stream with its own graph, pool and RNG state, stepping
them round-robin: separate processes would only time-slice the GPU (performance-notes.md).

A worker that dies (killed, segfault, out of host memory) is replaced and its candidates are
sent again, once; a candidate that kills two workers is recorded as failed. With a time
limit, a candidate still running at twice the limit (plus a minute of grace) has its worker
killed and is recorded as failed. The driver yields results as they arrive, so the journal
gets each one as soon as it exists.

Each worker talks to the driver over its own pipe, sending synchronously: a worker killed
mid-message can only damage its own pipe, which is replaced with it. (A shared queue would
not survive that: its write lock dies held, and every other worker blocks.)
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait

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

    def __init__(self, cfg):
        self.cfg = cfg
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
        limit = self.cfg.time_limit
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
                    yield i, {"status": "failed", "error": f"time limit {limit:g}s: worker killed after "
                                                           f"{2 * limit + GRACE:g}s", "device": worker.device}
                elif overdue:
                    todo.appendleft((i, task, tries))  # an innocent bystander of the kill
                elif tries >= 1:
                    yield i, {"status": "failed", "error": f"worker died twice (exit code {code})",
                              "device": worker.device}
                else:
                    todo.appendleft((i, task, tries + 1))
            self.workers[wid] = self._spawn(worker.device, wid)

    def _spawn(self, device: str, wid: int) -> _Worker:
        ours, theirs = self.context.Pipe()
        fn = rebind(self.fn, device)
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


def plan_workers(cfg) -> tuple[list[str], int]:
    """Devices of the workers and candidates in flight per worker: one worker per GPU with
    `slots_per_gpu` streams; on CPU `workers` processes (default 1) with one slot each."""
    if cfg.device == "cuda":
        import torch

        gpus = torch.cuda.device_count()
        count = cfg.workers or gpus
        return [f"cuda:{k % gpus}" for k in range(count)], cfg.slots_per_gpu
    return ["cpu"] * (cfg.workers or 1), 1


def rebind(fn, device: str):
    """The evaluator for one worker's device (cuda:k)."""
    settings = getattr(fn, "settings", None)
    if settings is None or getattr(settings, "device", None) == device:
        return fn
    return type(fn)(replace(settings, device=device))


def worker_main(fn, device: str, slots: int, conn: Connection) -> None:
    """A worker process: evaluate the tasks the driver sends until it sends None."""
    streams = [None] * slots
    if device.startswith("cuda"):
        import torch

        torch.cuda.set_device(device)
        if slots > 1:
            streams = [torch.cuda.Stream() for _ in range(slots)]
    if slots == 1 or not hasattr(fn, "begin"):
        for i, task in iter(conn.recv, None):
            conn.send((i, fn(task)))
        return
    interleave(fn, streams, lambda block: conn.recv() if block or conn.poll() else NOTHING,
               lambda i, result: conn.send((i, result)))


NOTHING = object()  # take(block=False) found no task waiting


def interleave(fn, streams: list, take: Callable[[bool], object], send: Callable[[int, dict], None]) -> None:
    """Keep one candidate per stream in flight, stepping them round-robin; a finished one's
    stream takes the next task. Each step runs with its candidate's stream current.
    `take(block)` gives (index, task), None to stop, or NOTHING when none is waiting."""
    import torch

    active: dict[int, tuple[int, object]] = {}  # slot -> (task index, evaluation generator)
    stopping = False
    while active or not stopping:
        while not stopping and len(active) < len(streams):
            item = take(not active)
            if item is NOTHING:
                break
            if item is None:
                stopping = True
                break
            slot = next(k for k in range(len(streams)) if k not in active)
            i, task = item
            with torch.cuda.stream(streams[slot]):
                active[slot] = (i, fn.begin(task, streams[slot]))
        for slot, (i, steps) in list(active.items()):
            with torch.cuda.stream(streams[slot]):
                try:
                    next(steps)
                except StopIteration as done:
                    del active[slot]
                    send(i, done.value)


def run_in_flight(fn, tasks: Sequence, streams: list) -> list[dict]:
    """Evaluate `tasks` in this process, len(streams) at a time; results in task order."""
    pending = deque(enumerate(tasks))
    results: list = [None] * len(tasks)
    interleave(fn, streams, lambda block: pending.popleft() if pending else None,
               lambda i, result: results.__setitem__(i, result))
    return results
