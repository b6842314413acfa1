"""A worker's loop: evaluate what the driver sends, several candidates in flight on CUDA streams.   [torch]

With K slots on a GPU, K candidates train in one process, each on its own CUDA stream with its
own graph, pool and RNG state, stepped round-robin: separate processes would only time-slice
the GPU (docs/performance.md). Between steps the loop reports that it is alive, with each
candidate's steps done (`beat`), so the driver can tell a busy worker from a hung one and show
progress; a DeviceLost (a CUDA error that poisons the process) ends the loop, for the caller
to end the process.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection

import torch

NOTHING = object()  # take(block=False) found no task waiting


def serve(fn, device: str, slots: int, conn: Connection, beat: Callable[[dict], None] | None = None) -> None:
    """Evaluate the (index, task) pairs `conn` brings until it brings None; send back
    (index, result) as each finishes. `beat(steps)` is called after every round of steps,
    with {task index: (steps done, steps)} of the candidates in flight."""
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    if not hasattr(fn, "begin"):  # a plain function: one task at a time
        for i, task in iter(conn.recv, None):
            conn.send((i, fn(task)))
        return
    interleave(fn, streams_for(device, slots), lambda block: conn.recv() if block or conn.poll() else NOTHING,
               lambda i, result: conn.send((i, result)), beat)


def streams_for(device: str, slots: int) -> list:
    """One CUDA stream per slot where several candidates share a GPU; else None (the
    current stream; a lone candidate's Trainer makes its own capture stream)."""
    if device.startswith("cuda") and slots > 1:
        return [torch.cuda.Stream() for _ in range(slots)]
    return [None] * slots


def interleave(fn, streams: list, take: Callable[[bool], object], send: Callable[[int, object], None],
               beat: Callable[[dict], None] | None = None) -> None:
    """Keep one candidate per stream in flight, stepping them round-robin; a finished one's
    stream takes the next task. Each step runs with its candidate's stream current.
    `take(block)` gives (index, task), None to stop, or NOTHING when none is waiting."""
    active: dict[int, tuple[int, object]] = {}  # slot -> (task index, evaluation generator)
    steps_done: dict[int, object] = {}  # task index -> what its generator last yielded
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
                    steps_done[i] = next(steps)
                except StopIteration as done:
                    del active[slot]
                    steps_done.pop(i, None)
                    send(i, done.value)
        if beat is not None and active:
            beat(steps_done)


def run_in_flight(fn, tasks: Sequence, streams: list, done: Callable[[int, object], None] | None = None) -> list:
    """Evaluate `tasks` in this process, len(streams) at a time; results in task order.
    `done(i, result)` is called as each finishes."""
    pending = deque(enumerate(tasks))
    results: list = [None] * len(tasks)

    def finished(i, result):
        results[i] = result
        if done is not None:
            done(i, result)

    interleave(fn, streams, lambda block: pending.popleft() if pending else None, finished)
    return results
