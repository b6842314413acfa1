"""A worker's loop: evaluate what the driver sends, several candidates in flight on CUDA streams.   [torch]

With K slots on a GPU, K candidates train in one process, each on its own CUDA stream with its
own graph, pool and RNG state, stepped round-robin: separate processes would only time-slice
the GPU (docs/performance.md).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection

import torch

NOTHING = object()  # take(block=False) found no task waiting


def serve(fn, device: str, slots: int, conn: Connection) -> None:
    """Evaluate the (index, task) pairs `conn` brings until it brings None; send back
    (index, result) as each finishes."""
    streams = [None] * slots
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
        if slots > 1:
            streams = [torch.cuda.Stream() for _ in range(slots)]
    if slots == 1 or not hasattr(fn, "begin"):
        for i, task in iter(conn.recv, None):
            conn.send((i, fn(task)))
        return
    interleave(fn, streams, lambda block: conn.recv() if block or conn.poll() else NOTHING,
               lambda i, result: conn.send((i, result)))


def interleave(fn, streams: list, take: Callable[[bool], object], send: Callable[[int, object], None]) -> None:
    """Keep one candidate per stream in flight, stepping them round-robin; a finished one's
    stream takes the next task. Each step runs with its candidate's stream current.
    `take(block)` gives (index, task), None to stop, or NOTHING when none is waiting."""
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


def run_in_flight(fn, tasks: Sequence, streams: list) -> list:
    """Evaluate `tasks` in this process, len(streams) at a time; results in task order."""
    pending = deque(enumerate(tasks))
    results: list = [None] * len(tasks)
    interleave(fn, streams, lambda block: pending.popleft() if pending else None,
               lambda i, result: results.__setitem__(i, result))
    return results
