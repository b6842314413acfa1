"""The serial backend: evaluations one after another in this process.   [no torch]"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from evo_nas.errors import DeviceLost
from evo_nas.records import Result

STEPS_EVERY = 1.0  # seconds between on_steps calls


class SerialBackend:
    name = "serial"

    def map(self, fn: Callable, tasks: Sequence, on_steps: Callable[[dict], None] | None = None
            ) -> Iterator[tuple[int, Result]]:
        for i, task in enumerate(tasks):
            try:
                result = self._evaluate(fn, i, task, on_steps)
            except DeviceLost as lost:  # this process cannot go on, and cannot be replaced
                yield i, lost.result  # journaled as failed; then the run stops with the reason
                raise
            yield i, result

    def _evaluate(self, fn: Callable, i: int, task, on_steps):
        if on_steps is None or not hasattr(fn, "begin"):
            return fn(task)
        steps, told = fn.begin(task), time.monotonic()
        while True:
            try:
                done = next(steps)
            except StopIteration as end:
                return end.value
            if time.monotonic() - told >= STEPS_EVERY:
                on_steps({i: done})
                told = time.monotonic()

    def close(self) -> None:
        pass
