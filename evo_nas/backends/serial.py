"""The serial backend: evaluations one after another in this process.   [stdlib]

Every backend offers the same small interface: `map(fn, tasks)` yields `(index, result)` as
each evaluation finishes (any order), and `close()`. The runner appends each result to the
journal as it arrives, so a crash loses at most the evaluations still in flight. A backend
may also tell `on_steps({index: (steps done, steps)})` how far the candidates in flight are
(serial and local do, every few seconds), for the progress display.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from evo_nas.errors import DeviceLost

STEPS_EVERY = 1.0  # seconds between on_steps calls


class SerialBackend:
    name = "serial"

    def __init__(self):
        self.on_steps: Callable[[dict], None] | None = None

    def map(self, fn: Callable, tasks: Sequence) -> Iterator[tuple[int, dict]]:
        for i, task in enumerate(tasks):
            try:
                result = self._evaluate(fn, i, task)
            except DeviceLost as lost:  # this process cannot go on, and cannot be replaced
                yield i, lost.result  # journaled as failed; then the run stops with the reason
                raise
            yield i, result

    def _evaluate(self, fn: Callable, i: int, task):
        if self.on_steps is None or not hasattr(fn, "begin"):
            return fn(task)
        steps, told = fn.begin(task), time.monotonic()
        while True:
            try:
                done = next(steps)
            except StopIteration as end:
                return end.value
            if time.monotonic() - told >= STEPS_EVERY:
                self.on_steps({i: done})
                told = time.monotonic()

    def close(self) -> None:
        pass
