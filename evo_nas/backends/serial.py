"""The serial backend: evaluations one after another in this process.   [stdlib]

Every backend offers the same small interface: `map(fn, tasks)` yields `(index, result)` as
each evaluation finishes (any order), and `close()`. The runner appends each result to the
journal as it arrives, so a crash loses at most the evaluations still in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence


class SerialBackend:
    name = "serial"

    def map(self, fn: Callable, tasks: Sequence) -> Iterator[tuple[int, dict]]:
        for i, task in enumerate(tasks):
            yield i, fn(task)

    def close(self) -> None:
        pass
