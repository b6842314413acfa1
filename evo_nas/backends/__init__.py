"""Who runs evaluations: serial (this process), local (worker processes, GPU slots), ray.   [stdlib; lazy imports]

Every backend is a `Backend`: the journaled evaluator (evo_nas.journaled) journals each result
as it arrives, so a crash loses at most the evaluations still in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from evo_nas.config import BackendConfig
from evo_nas.records import Result, Status


class Backend(Protocol):
    name: str

    def map(self, fn: Callable, tasks: Sequence, on_steps: Callable[[dict], None] | None = None
            ) -> Iterator[tuple[int, Result]]:
        """`fn(task)` for every task; yields (task index, its Result) as each finishes, in any
        order. `on_steps({task index: (steps done, steps)})`, where the backend can tell, says
        every few seconds how far the tasks in flight are (serial and local do)."""

    def close(self) -> None:
        """Stop the workers; the backend may not be used again."""

RETRIES = 1  # a task whose worker died is sent again this many times, then recorded as failed


def make(cfg: BackendConfig, time_limit: float = 0.0) -> Backend:
    """The backend `cfg` names; a missing package or cluster fails here, before anything runs."""
    if cfg.backend == "serial":
        from evo_nas.backends.serial import SerialBackend

        return SerialBackend()
    if cfg.backend == "local":
        from evo_nas.backends.local import LocalBackend

        return LocalBackend(cfg, time_limit)
    from evo_nas.backends.ray import RayBackend

    return RayBackend(cfg)


def after_death(tries: int, why: str, device: str | None = None) -> Result | None:
    """The retry policy when a task's worker died: None to send it again (it is retried
    RETRIES times), else the failed Result to record."""
    if tries < RETRIES:
        return None
    return Result(Status.FAILED, error=f"{why}, {tries + 1} times", device=device)
